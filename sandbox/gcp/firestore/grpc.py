"""Firestore's data plane over gRPC (`FIRESTORE_EMULATOR_HOST`): what `google.cloud.firestore.Client`
uses for set / get / update / delete / batches / transactions / queries / count / list_documents /
BulkWriter. Handlers work on the raw protobufs of the types shipped with google-cloud-firestore."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.cloud.firestore_v1 import types as T
from google.protobuf import empty_pb2
from google.rpc import status_pb2

from sandbox.gcp.backends import GcpBackends
from sandbox.gcp.common import RPC_CODES, GoogleError
from sandbox.gcp.firestore.models import now_pb
from sandbox.gcp.grpc_server import Pb, server_stream, unary


def _pb(cls: Any) -> Pb:
    return Pb(cls.pb())


def handlers(b: GcpBackends, service: str) -> dict[str, grpc.RpcMethodHandler]:
    fs = b.firestore

    def commit(req: Any, ctx: Any) -> Any:
        results, commit_time = fs.commit(list(req.writes), req.transaction)
        out = T.CommitResponse.pb()()
        out.commit_time.CopyFrom(commit_time)
        for update_time, transform_results in results:
            wr = out.write_results.add()
            wr.update_time.CopyFrom(update_time)
            wr.transform_results.extend(transform_results)
        return out

    def batch_write(req: Any, ctx: Any) -> Any:
        out = T.BatchWriteResponse.pb()()
        for write in req.writes:
            try:
                results, _ = fs.commit([write])
                wr = out.write_results.add()
                wr.update_time.CopyFrom(results[0][0])
                out.status.add()
            except GoogleError as exc:
                out.write_results.add()
                out.status.append(status_pb2.Status(code=RPC_CODES[exc.status][0], message=exc.message))
        return out

    def batch_get(req: Any, ctx: Any) -> Iterator[Any]:
        fs.check_database(req.database)
        read_time = now_pb()
        for name, doc in fs.get_documents(list(req.documents)):
            out = T.BatchGetDocumentsResponse.pb()()
            out.read_time.CopyFrom(read_time)
            if doc is None:
                out.missing = name
            else:
                out.found.CopyFrom(_masked(doc, req))
            yield out

    def run_query(req: Any, ctx: Any) -> Iterator[Any]:
        docs = fs.run_query(req.parent, req.structured_query)
        read_time = now_pb()
        if not docs:
            out = T.RunQueryResponse.pb()()
            out.read_time.CopyFrom(read_time)
            yield out
            return
        for doc in docs:
            out = T.RunQueryResponse.pb()()
            out.read_time.CopyFrom(read_time)
            out.document.CopyFrom(doc)
            yield out

    def run_aggregation(req: Any, ctx: Any) -> Iterator[Any]:
        agg = req.structured_aggregation_query
        docs = fs.run_query(req.parent, agg.structured_query)
        out = T.RunAggregationQueryResponse.pb()()
        out.read_time.CopyFrom(now_pb())
        for a in agg.aggregations:
            kind = a.WhichOneof("operator")
            value = out.result.aggregate_fields[a.alias]
            if kind == "count":
                limit = a.count.up_to.value if a.count.HasField("up_to") else None
                value.integer_value = min(len(docs), limit) if limit is not None else len(docs)
            else:
                raise GoogleError("UNIMPLEMENTED", f"aggregation {kind} is not served by the sandbox (count is)")
        yield out

    def list_documents(req: Any, ctx: Any) -> Any:
        docs = fs.list_documents(req.parent, req.collection_id)
        start = int(req.page_token or 0)
        size = req.page_size or 300
        out = T.ListDocumentsResponse.pb()()
        for doc in docs[start: start + size]:
            out.documents.append(doc)
        if start + size < len(docs):
            out.next_page_token = str(start + size)
        return out

    def begin_transaction(req: Any, ctx: Any) -> Any:
        out = T.BeginTransactionResponse.pb()()
        out.transaction = fs.begin_transaction(req.database)
        return out

    def rollback(req: Any, ctx: Any) -> Any:
        fs.end_transaction(req.transaction)
        return empty_pb2.Empty()

    return {
        "Commit": unary(commit, _pb(T.CommitRequest), _pb(T.CommitResponse)),
        "BatchWrite": unary(batch_write, _pb(T.BatchWriteRequest), _pb(T.BatchWriteResponse)),
        "BatchGetDocuments": server_stream(batch_get, _pb(T.BatchGetDocumentsRequest),
                                           _pb(T.BatchGetDocumentsResponse)),
        "RunQuery": server_stream(run_query, _pb(T.RunQueryRequest), _pb(T.RunQueryResponse)),
        "RunAggregationQuery": server_stream(run_aggregation, _pb(T.RunAggregationQueryRequest),
                                             _pb(T.RunAggregationQueryResponse)),
        "ListDocuments": unary(list_documents, _pb(T.ListDocumentsRequest), _pb(T.ListDocumentsResponse)),
        "BeginTransaction": unary(begin_transaction, _pb(T.BeginTransactionRequest),
                                  _pb(T.BeginTransactionResponse)),
        "Rollback": unary(rollback, _pb(T.RollbackRequest), Pb(empty_pb2.Empty)),
    }


def _masked(doc: Any, req: Any) -> Any:
    if not req.HasField("mask") or not req.mask.field_paths:
        return doc
    from sandbox.gcp.firestore.models import get_field, set_field

    out = T.Document.pb()()
    out.name = doc.name
    out.create_time.CopyFrom(doc.create_time)
    out.update_time.CopyFrom(doc.update_time)
    for path in req.mask.field_paths:
        set_field(out.fields, path, get_field(doc.fields, path))
    return out
