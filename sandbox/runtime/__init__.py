"""Running deployed code in the sandbox: Function Apps from their Kudu packages (each in its own
local host process) and Lambdas from their zips (warm worker processes)."""

from sandbox.runtime.function_apps import FunctionAppRuntime

__all__ = ["FunctionAppRuntime"]
