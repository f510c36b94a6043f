"""Helpers the test packages share, and bench/ too (fixtures stay in the conftest.py files and call these).

    ports          free_port(): a free TCP port on 127.0.0.1
    waiting        wait_until(): poll a condition with a deadline
    health         healthy(), wait_healthy(), status(): whether an HTTP service answers
    answers        detail(), openapi_routes(): a service's error bodies and OpenAPI routes
    node_processes supervisor_process(): `zeronode supervisor` in a process of its own
    processes      ZERONODE, ZeronodeProcess (its JSON logs collected), stop(), alive()
    redis_server   start_redis_server(): a private redis-server on a Unix socket
    http_load      http_request(), drive(): an HTTP/1.1 load client on keep-alive connections (benches)
    postgres       postgres_server(): a private PostgreSQL server on a Unix socket
    serving        listener(), uvicorn_server(), BackgroundServer: ASGI apps served by uvicorn
    nodes          new_node_key(), register_node(): nodes made up in a ledger
    fleet          many simulated supervisors in one process (also `python -m tests.support.fleet`)
"""
