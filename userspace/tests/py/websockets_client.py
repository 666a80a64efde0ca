"""Echo through the proxy with the `websockets` client (sync API): the messages of
tests/js/messages.js, rebuilt here, one at a time, each echoed intact, then the XSS message,
which must close the connection (the test checks the code). Prints one JSON line:
{"echoed", "deflate", "close_code", "close_reason"}."""

import json
import sys

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
except ImportError:
    sys.exit(
        "the python package `websockets` is missing: "
        "pip install websockets==15.0.1 (as .ci/run does)"
    )

COUNT = 100
PADDING = "lorem ipsum dolor sit amet " * 50
XSS = f"<script>alert(document.cookie)</script> {PADDING}"
TIMEOUT = 5


def message(i):
    if i % 2 == 0:
        return f"message {i}" + (" " + PADDING if i % 10 == 0 else "")
    length = 1500 if i % 10 == 1 else 16 + i
    return bytes((i * 7 + j * 13) % 256 for j in range(length))


def main(url):
    with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        echoed = 0
        for i in range(COUNT):
            ws.send(message(i))
            try:
                echo = ws.recv(timeout=TIMEOUT)
            except ConnectionClosed:
                break
            if echo != message(i):
                sys.exit(f"websockets_client: echo {i} differs")
            echoed += 1
        if echoed == COUNT:
            ws.send(XSS)
        try:
            ws.recv(timeout=TIMEOUT)
            sys.exit("websockets_client: the XSS message was echoed")
        except ConnectionClosed as closed:
            close = closed.rcvd
    print(
        json.dumps(
            {
                "echoed": echoed,
                "deflate": "permessage-deflate" in extensions,
                "close_code": close.code if close else None,
                "close_reason": close.reason if close else None,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
