"""Hot reader, last entry: TwinMaker `attributePropertyValueReaderByEntity` (direct invoke) or a remote reader's Function URL call
(token-checked), both in TwinMaker's request/response shapes."""

from __future__ import annotations

from typing import Any

from payload_functions.aws import hot_reader
from payload_functions.core.readers import read_latest
from shared.contracts import Function

FUNCTION = Function.HOT_READER_LAST_ENTRY
READS = hot_reader.READS


def handler(event: Any, context: Any = None) -> Any:
    return hot_reader.serve(FUNCTION, read_latest, event)
