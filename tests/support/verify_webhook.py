"""Verifies webhooks with the reference Standard Webhooks library (PyPI `standardwebhooks`).

Reads a JSON list of {"secret", "headers", "body"} on stdin and prints a JSON list with,
for each, "ok" or the library's reason for refusing it.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook

results = []
for m in json.load(sys.stdin):
    try:
        Webhook(m["secret"]).verify(m["body"], m["headers"])
        results.append("ok")
    except Exception as e:  # the reason goes back to the test
        results.append(f"{type(e).__name__}: {e}")
print(json.dumps(results))
