"""L0 hot reader, last entry (public HTTP, token checked in code): the latest stored value of
each selected property, in IoT TwinMaker's `attributePropertyValueReaderByEntity` shapes."""

from __future__ import annotations

import functions_framework

from payload_functions.core.readers import read_latest
from payload_functions.gcp import hot_reader
from payload_functions.gcp.runtime import HttpRequest
from shared.contracts import Function

FUNCTION = Function.HOT_READER_LAST_ENTRY
READS = hot_reader.READS


@functions_framework.http
def hot_reader_last_entry(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    return hot_reader.serve(FUNCTION, read_latest, request)
