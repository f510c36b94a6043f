"""The coordinator's routes, one router per resource; coord.app puts them together.

    deployments.py   /v1/deployments: submit, follow, list, cancel
    operations.py    /health, /metrics
    dependencies.py  what the handlers take from the app: store, dispatcher, settings, metrics, authorizer, rate
"""
