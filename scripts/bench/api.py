"""The toolbar's HTTP API as the workloads use it: realistic bodies, setting a store up, the write mix."""

from __future__ import annotations

from typing import Any

from .loadgen import Connection, Request, request_bytes

PAGE_URL = "http://localhost:3000/"
INTENTS = ("fix", "change", "question", "approve")
SEVERITIES = ("blocking", "important", "suggestion")


def annotation_body(i: int, page: str = PAGE_URL) -> dict[str, Any]:
    """What the toolbar POSTs for one annotation (a typical subset of its fields)."""
    section = i % 7 + 1
    return {
        "comment": f"Annotation {i}: make this heading larger and bolder, and align it with the grid",
        "element": "h2",
        "elementPath": f"body > main > section:nth-child({section}) > h2",
        "x": 10.5 + i % 500,
        "y": 20 + 3 * (i % 300),
        "timestamp": 1_700_000_000_000 + i,
        "url": page,
        "intent": INTENTS[i % len(INTENTS)],
        "severity": SEVERITIES[i % len(SEVERITIES)],
        "boundingBox": {"x": 120 + i % 40, "y": 340.5, "width": 480, "height": 36},
        "selectedText": "Pricing plans",
        "nearbyText": "Choose the plan that fits your team",
        "cssClasses": "section-title text-xl",
        "fullPath": f"html > body > div#root > main > section:nth-child({section}) > h2.section-title",
        "reactComponents": "App > PricingPage > Section > Heading",
        "isFixed": False,
    }


async def create_session(conn: Connection, port: int, page: str = PAGE_URL) -> str:
    session = await conn.json(request_bytes(port, "POST", "/sessions", {"url": page}), 201)
    return str(session["id"])


async def create_annotations(conn: Connection, port: int, session_id: str, count: int, first: int = 0) -> list[str]:
    ids: list[str] = []
    for i in range(first, first + count):
        raw = request_bytes(port, "POST", f"/sessions/{session_id}/annotations", annotation_body(i))
        ids.append(str((await conn.json(raw, 201))["id"]))
    return ids


async def set_up(port: int, annotations: int, sessions: int = 1) -> tuple[list[str], list[str]]:
    """`sessions` sessions with `annotations` pending annotations spread over them; (session ids, annotation ids)."""
    conn = await Connection.open(port)
    try:
        session_ids = [await create_session(conn, port, f"http://localhost:{3000 + s}/") for s in range(sessions)]
        ids: list[str] = []
        for s, session_id in enumerate(session_ids):
            share = annotations // sessions + (1 if s < annotations % sessions else 0)
            ids += await create_annotations(conn, port, session_id, share, first=len(ids))
    finally:
        await conn.aclose()
    return session_ids, ids


def patch_request(port: int, annotation_id: str, i: int) -> Request:
    """A PATCH: a new comment, or a status change (acknowledged, then back to pending)."""
    body: dict[str, Any]
    match i % 3:
        case 0:
            body = {"comment": f"Edited ({i}): larger heading, 28px, bold"}
        case 1:
            body = {"status": "acknowledged"}
        case _:
            body = {"status": "pending"}
    return Request(request_bytes(port, "PATCH", f"/annotations/{annotation_id}", body), 200)


def thread_request(port: int, annotation_id: str, i: int) -> Request:
    body = {"role": "agent", "content": f"Looking into it ({i}): the heading uses the wrong size token"}
    return Request(request_bytes(port, "POST", f"/annotations/{annotation_id}/thread", body), 201)


def create_request(port: int, session_id: str, i: int) -> Request:
    raw = request_bytes(port, "POST", f"/sessions/{session_id}/annotations", annotation_body(i))
    return Request(raw, 201)


def write_mix(port: int, session_id: str, ids: list[str], client: int, ops: int, first: int) -> list[Request]:
    """One client's write mix: create an annotation, PATCH one, reply in one's thread, and again."""
    requests: list[Request] = []
    for k in range(ops):
        i = first + k
        target = ids[(client * 7 + k // 3) % len(ids)]
        match k % 3:
            case 0:
                requests.append(create_request(port, session_id, i))
            case 1:
                requests.append(patch_request(port, target, i // 3))
            case _:
                requests.append(thread_request(port, target, i))
    return requests


def split(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal counts."""
    return [total // parts + (1 if p < total % parts else 0) for p in range(parts)]
