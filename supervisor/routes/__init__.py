"""The supervisor's routes, one router per resource; supervisor.app puts them together.

    jobs.py          /v1/jobs: submit, read, list, cancel
    operations.py    /health, /metrics
    dependencies.py  what the handlers take from the app: the Supervisor
"""
