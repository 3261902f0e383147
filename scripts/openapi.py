#!/usr/bin/env python3
"""Writes docs/openapi.yaml and docs/openapi.json (the copy the server embeds and serves
at GET /v1/openapi.json) from the description below: the HTTP API of SPEC §3, every
status and error code. Run after changing it: python3 scripts/openapi.py
(tests/openapi.rs checks that the two files say the same and that the live server
matches them, with schemathesis)."""
import json
import pathlib

import yaml

ERROR_CODES = [
    "invalid_json", "invalid_session", "invalid_session_id", "invalid_metadata", "invalid_event",
    "invalid_refs", "invalid_cursor", "invalid_limit", "invalid_batch_size", "invalid_websocket_upgrade",
    "session_not_found", "session_exists", "idempotency_conflict", "expected_seq_conflict",
    "raft_unavailable", "raft_timeout", "internal_error", "archive_unavailable",
    "not_found", "method_not_allowed", "payload_too_large", "bad_request", "request_timeout",
    "not_implemented", "too_many_connections", "http_version_not_supported",
]


def error(description, codes):
    return {
        "description": f"{description} (`error`: {', '.join(codes)})",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def json_body(schema_ref, description):
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


SESSION_ID = {
    "name": "id", "in": "path", "required": True,
    "description": "1-128 bytes of [A-Za-z0-9._:-] (percent-encoded in the path); anything else is 400 invalid_session_id.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
CURSOR = {
    "name": "cursor", "in": "query", "required": False,
    "description": "Return events with seq > cursor (default 0); not a non-negative integer: 400 invalid_cursor.",
    "schema": {"type": "integer", "minimum": 0, "maximum": 18446744073709551615, "default": 0},
}
UNAVAILABLE = error("No quorum in time (the write may or may not have committed: retry with the same idempotency key), or the node is draining",
                    ["raft_unavailable", "raft_timeout"])
ARCHIVE = error("The events asked for were trimmed after archiving and Postgres cannot serve them now", ["archive_unavailable"])
COMMON_4XX = {
    "400": error("Malformed request", ["invalid_session_id", "bad_request"]),
    "404": error("Unknown session", ["session_not_found"]),
    "405": error("Wrong method for a known path (see the Allow header)", ["method_not_allowed"]),
}

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "Starcite",
        "version": "1",
        "summary": "Ordered, durable, replayable event logs per session (SPEC §3).",
        "description": "Every error is `{\"error\": code, \"message\": text}`. Unknown routes: 404 not_found; a known path with the wrong method: 405 method_not_allowed with an Allow header; bodies over STARCITE_MAX_BODY_BYTES: 413 payload_too_large; a draining node answers 503. Tails (GET …/tail) are WebSocket upgrades (RFC 6455) or, with Accept: text/event-stream, SSE.",
    },
    "servers": [{"url": "http://127.0.0.1:4000"}],
    "paths": {
        "/v1/sessions": {
            "post": {
                "operationId": "createSession",
                "summary": "Create a session",
                "requestBody": {"required": False, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateSession"}}}},
                "responses": {
                    "201": json_body("#/components/schemas/Session", "Created"),
                    "400": error("Bad body", ["invalid_json", "invalid_session", "invalid_session_id", "invalid_metadata"]),
                    "405": COMMON_4XX["405"],
                    "409": error("The id is taken", ["session_exists"]),
                    "413": error("Body over the limit", ["payload_too_large"]),
                    "503": UNAVAILABLE,
                },
            },
        },
        "/v1/sessions/{id}": {
            "get": {
                "operationId": "getSession",
                "summary": "Read a session record",
                "parameters": [SESSION_ID],
                "responses": {
                    "200": json_body("#/components/schemas/Session", "The session with its current last_seq"),
                    **COMMON_4XX,
                    "503": UNAVAILABLE,
                },
            },
        },
        "/v1/sessions/{id}/append": {
            "post": {
                "operationId": "append",
                "summary": "Append one event (answered once committed on a quorum, fdatasync'd)",
                "parameters": [SESSION_ID],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AppendEvent"}}}},
                "responses": {
                    "201": json_body("#/components/schemas/Appended", "Appended, or deduped by its idempotency key"),
                    "400": error("Bad body or id", ["invalid_json", "invalid_event", "invalid_metadata", "invalid_refs", "invalid_session_id", "bad_request"]),
                    "404": COMMON_4XX["404"],
                    "405": COMMON_4XX["405"],
                    "409": error("Idempotency key reused with another event, or expected_seq differs from last_seq", ["idempotency_conflict", "expected_seq_conflict"]),
                    "413": error("Body over the limit", ["payload_too_large"]),
                    "503": UNAVAILABLE,
                },
            },
        },
        "/v1/sessions/{id}/events": {
            "get": {
                "operationId": "events",
                "summary": "Read a page of committed events",
                "parameters": [
                    SESSION_ID, CURSOR,
                    {"name": "limit", "in": "query", "required": False,
                     "description": "At most this many events (default 100; above 1000 is capped at 1000); 0 or not a number: 400 invalid_limit.",
                     "schema": {"type": "integer", "minimum": 1, "default": 100}},
                ],
                "responses": {
                    "200": json_body("#/components/schemas/Page", "Events with seq > cursor, ascending, gap-free"),
                    "400": error("Bad cursor, limit or id", ["invalid_cursor", "invalid_limit", "invalid_session_id", "bad_request"]),
                    "404": COMMON_4XX["404"],
                    "405": COMMON_4XX["405"],
                    "503": {**UNAVAILABLE, "description": UNAVAILABLE["description"] + "; or " + ARCHIVE["description"] + " (archive_unavailable)"},
                },
            },
        },
        "/v1/sessions/{id}/tail": {
            "get": {
                "operationId": "tail",
                "summary": "Tail a session: replay from the cursor, then live (WebSocket, or SSE with Accept: text/event-stream)",
                "parameters": [
                    SESSION_ID, CURSOR,
                    {"name": "batch_size", "in": "query", "required": False,
                     "description": "WebSocket: up to this many events per frame as a JSON array (1-1000, default 1); out of range: 400 invalid_batch_size.",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}},
                    {"name": "Last-Event-ID", "in": "header", "required": False,
                     "description": "SSE: the cursor; wins over ?cursor=.", "schema": {"type": "string"}},
                ],
                "responses": {
                    "101": {"description": "WebSocket upgrade: one event object (or an array with batch_size > 1) per text frame"},
                    "200": {"description": "SSE stream: `id: <seq>`, `event: event`, `data: <event JSON>` per message; `:` heartbeats",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                    "400": error("Not an upgrade and not SSE, or a bad cursor, batch size or id",
                                 ["invalid_websocket_upgrade", "invalid_cursor", "invalid_batch_size", "invalid_session_id", "bad_request"]),
                    "404": COMMON_4XX["404"],
                    "405": COMMON_4XX["405"],
                    "503": {**UNAVAILABLE, "description": UNAVAILABLE["description"] + "; or " + ARCHIVE["description"] + " (archive_unavailable)"},
                },
            },
        },
        "/health/live": {
            "get": {"operationId": "live", "summary": "Liveness",
                    "responses": {"200": json_body("#/components/schemas/Health", "The process serves HTTP"),
                                  "405": COMMON_4XX["405"]}},
        },
        "/health/ready": {
            "get": {"operationId": "ready", "summary": "Readiness: every Raft group this node hosts has a reachable leader, recovery done",
                    "responses": {"200": json_body("#/components/schemas/Health", "Ready"),
                                  "405": COMMON_4XX["405"],
                                  "503": json_body("#/components/schemas/Health", "Not ready: starting (raft_sync) or stopping (shutting_down)")}},
        },
        "/metrics": {
            "get": {"operationId": "metrics", "summary": "Prometheus text exposition (format 0.0.4)",
                    "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                  "405": COMMON_4XX["405"]}},
        },
        "/v1/openapi.json": {
            "get": {"operationId": "openapi", "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}},
                                  "405": COMMON_4XX["405"]}},
        },
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object", "required": ["error", "message"], "additionalProperties": False,
                "properties": {"error": {"type": "string", "enum": ERROR_CODES}, "message": {"type": "string"}},
            },
            "Object": {"type": "object", "description": "Any JSON object, stored and returned exactly (key order, number spelling)."},
            "Timestamp": {"type": "string", "description": "RFC 3339, UTC, microseconds, Z", "pattern": "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}Z$"},
            "CreateSession": {
                "type": "object",
                "properties": {
                    "id": {"type": ["string", "null"], "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$"},
                    "title": {"type": ["string", "null"]},
                    "metadata": {"anyOf": [{"$ref": "#/components/schemas/Object"}, {"type": "null"}]},
                },
            },
            "Session": {
                "type": "object", "required": ["id", "title", "metadata", "last_seq", "created_at", "updated_at"],
                "properties": {
                    "id": {"type": "string"}, "title": {"type": ["string", "null"]},
                    "metadata": {"$ref": "#/components/schemas/Object"},
                    "last_seq": {"type": "integer", "minimum": 0},
                    "created_at": {"$ref": "#/components/schemas/Timestamp"},
                    "updated_at": {"$ref": "#/components/schemas/Timestamp"},
                },
            },
            "AppendEvent": {
                "type": "object", "required": ["type", "payload", "actor"],
                "properties": {
                    "type": {"type": "string", "minLength": 1},
                    "payload": {"$ref": "#/components/schemas/Object"},
                    "actor": {"type": "string", "minLength": 1},
                    "source": {"type": ["string", "null"], "minLength": 1},
                    "metadata": {"anyOf": [{"$ref": "#/components/schemas/Object"}, {"type": "null"}]},
                    "refs": {"anyOf": [{"$ref": "#/components/schemas/Refs"}, {"type": "null"}]},
                    "idempotency_key": {"type": ["string", "null"], "minLength": 1},
                    "expected_seq": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 18446744073709551615}, {"type": "string", "pattern": "^0*[0-9]{1,19}$"}, {"type": "null"}],
                                     "description": "A string of decimal digits is accepted up to the largest u64 value; the pattern shows the 19-digit part of that range."},
                },
            },
            "Refs": {
                "type": "object",
                "description": "Other keys are kept as they are.",
                "properties": {
                    "to_seq": {"type": ["integer", "null"], "minimum": 0, "maximum": 18446744073709551615},
                    "step": {"type": ["integer", "null"], "minimum": 0, "maximum": 18446744073709551615},
                    "request_id": {"type": ["string", "null"]}, "sequence_id": {"type": ["string", "null"]},
                },
            },
            "Appended": {
                "type": "object", "required": ["seq", "last_seq", "deduped"],
                "properties": {"seq": {"type": "integer", "minimum": 1}, "last_seq": {"type": "integer", "minimum": 1}, "deduped": {"type": "boolean"}},
            },
            "Event": {
                "type": "object",
                "required": ["seq", "type", "payload", "actor", "source", "metadata", "refs", "idempotency_key", "inserted_at"],
                "properties": {
                    "seq": {"type": "integer", "minimum": 1}, "type": {"type": "string"},
                    "payload": {"$ref": "#/components/schemas/Object"}, "actor": {"type": "string"},
                    "source": {"type": ["string", "null"]}, "metadata": {"$ref": "#/components/schemas/Object"},
                    "refs": {"$ref": "#/components/schemas/Object"}, "idempotency_key": {"type": ["string", "null"]},
                    "inserted_at": {"$ref": "#/components/schemas/Timestamp"},
                },
            },
            "Page": {
                "type": "object", "required": ["events", "next_cursor", "last_seq"],
                "properties": {
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                    "next_cursor": {"type": "integer", "minimum": 0}, "last_seq": {"type": "integer", "minimum": 0},
                },
            },
            "Health": {
                "type": "object", "required": ["status"],
                "properties": {"status": {"type": "string", "enum": ["ok", "starting", "stopping"]},
                               "reason": {"type": "string", "enum": ["raft_sync", "shutting_down"]}, "message": {"type": "string"}},
            },
        },
    },
}

root = pathlib.Path(__file__).resolve().parent.parent / "docs"
header = "# Starcite's HTTP API (OpenAPI 3.1). Generated by scripts/openapi.py; also served at GET /v1/openapi.json.\n"
(root / "openapi.yaml").write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100))
(root / "openapi.json").write_text(json.dumps(doc, indent=1) + "\n")
