#!/usr/bin/env python3
"""Open 1,100 idle TCP connections to `bantam serve`, then time one `GET /health`
(and the next): whether idle clients can keep others out.

    bantam serve --port 8129 &
    python3 bench/idle_connections.py 127.0.0.1:8129
"""
import socket, time, urllib.request, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
base = sys.argv[1]; host, port = base.split(":")
socks = []
for i in range(1100):
    s = socket.socket(); s.connect((host, int(port))); socks.append(s)
t = time.time()
try:
    urllib.request.urlopen(f"http://{base}/health", timeout=120).read()
    print(f"1100 idle connections open: /health answered after {time.time() - t:.2f} s")
except Exception as e:
    print("health failed", e, time.time() - t)
t = time.time()
urllib.request.urlopen(f"http://{base}/health", timeout=120).read()
print(f"next /health {time.time() - t:.3f} s")
