"""Benchmark agentation-mcp against the npm agentation-mcp 1.3.2 it replaces.

Run from the repository root with the project's virtualenv:

    python -m scripts.bench [--quick] [--rounds N] [--only WORKLOAD,...] [--json PATH] [--chart PATH]

Workloads (one module each; `--only` takes these names):

    mcp-latency  MCP tool calls over stdio, one at a time and concurrent; then peak RSS
    writer       the writer's throughput in this process (ours only)
    startup      spawn to the first tools/list answer
    watch        annotation POST to agentation_watch_annotations result
    health       GET /health at 1 and 8 connections
    write-mix    create / PATCH / thread reply at 1, 8 and 64 clients
    conflict     96 clients writing to the same 16 annotations
    read-mix     16 readers (GET /pending, GET /sessions/:id) beside 2 writers
    sse-fanout   100 SSE listeners on GET /events, a writer at 60 PATCHes/s
    two-process  two servers on one store, the write mix over both ports
    replay       Last-Event-ID: 0 over a store of 100,000 events

Each workload runs round after round, alternating the servers (ours, npm, ours,
npm...), each run on a fresh server with a fresh HOME (so a fresh
~/.agentation/store.db). Ours is `.venv/bin/agentation-mcp server --port P`
with stdin a held-open pipe; npm is `node <cli.js> server --port P`, from
`scripts/install-reference` (or `AGENTATION_REF_CLI`), stopped with SIGTERM.
Without node or the reference, only ours runs. The HTTP workloads use the
lean trio load generator in `loadgen` (raw sockets, keep-alive, pre-built
requests, httptools), so the client is not what is measured.

Printed and written to the JSON file: per workload and case, the medians over
rounds of ours and npm and their ratio ours/npm, with the server's CPU time
per operation (from /proc/<pid>/stat). With matplotlib (`pip install -e
'.[bench]'`), also a PNG bar chart of ours relative to npm.
"""
