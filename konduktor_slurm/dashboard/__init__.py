"""``konduktor dashboard``: a live web page of your jobs, on top of the service layer.

- ``hub.py``: the one refresh loop of the process (one ``squeue`` per interval for every
  open page), the session it runs in, and the snapshot every page reads.
- ``payloads.py``: the snapshot as the page's JSON (table, detail, timeline, GPU-hours).
- ``actions.py``: stop / start / down through ``service.control``, with the CLI's messages.
- ``logtail.py``: a job's log, tailed through the session's transport.
- ``app.py``: the Starlette app (token, Host and Origin checks, server-sent events).
- ``server.py``: binds the socket and runs uvicorn.
- ``static/``: the page; it builds the DOM with ``textContent`` only.

Only ``konduktor dashboard`` imports this package's web parts (Starlette, uvicorn): every
other command starts as fast as before.
"""
