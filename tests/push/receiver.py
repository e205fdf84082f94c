#!/usr/bin/env python3
"""A loopback push receiver for tests/it/push.rs.

It decodes what Ember sends with the official schemas: OTLP profiles with PyPI
`opentelemetry-proto` (ExportProfilesServiceRequest, v1development), Pyroscope's
push.v1.PushRequest with the push.proto of tests/push/proto compiled by grpcio-tools
(scripts/bootstrap.sh --test puts it in tests/push/.venv/gen). Each accepted request is
one JSON line in --out; each Pyroscope pprof is saved as --pprof-dir/ID.pb.gz so that
`go tool pprof` can read it.

A body sent with `Content-Encoding: gzip` (OTLP, by default) is decompressed first; the
line's `bytes` is the size on the wire and `decoded_bytes` the size decoded. With
--tls-cert and --tls-key it listens for https.

--reject-window K answers 400 to every request holding the K-th distinct window (by start
time) it sees, so a sender must skip that window to make progress.
"""

import argparse
import gzip
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".venv", "gen"))

from opentelemetry.proto.collector.profiles.v1development import (  # noqa: E402
    profiles_service_pb2,
)
from pyroscope.push.v1 import push_pb2  # noqa: E402

LOCK = threading.Lock()
SEEN_STARTS = []
REJECTED = []


def any_value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def decode_otlp(body):
    req = profiles_service_pb2.ExportProfilesServiceRequest()
    req.ParseFromString(body)
    d = req.dictionary
    strings = list(d.string_table)

    def attrs(indices):
        out = {}
        for i in indices:
            a = d.attribute_table[i]
            out[strings[a.key_strindex]] = any_value(a.value)
        return out

    windows = []
    for rp in req.resource_profiles:
        resource = {kv.key: any_value(kv.value) for kv in rp.resource.attributes}
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                samples = []
                build_ids = set()
                for s in p.samples:
                    stack = d.stack_table[s.stack_index]
                    names = []
                    for li in stack.location_indices:  # leaf first
                        loc = d.location_table[li]
                        if loc.mapping_index:
                            m = d.mapping_table[loc.mapping_index]
                            for k, v in attrs(m.attribute_indices).items():
                                if k == "process.executable.build_id.gnu":
                                    build_ids.add(v)
                        for line in loc.lines:  # innermost first
                            f = d.function_table[line.function_index]
                            names.append(strings[f.name_strindex])
                    names.reverse()
                    samples.append(
                        {"stack": names, "value": s.values[0], "attrs": attrs(s.attribute_indices)}
                    )
                windows.append(
                    {
                        "id": p.profile_id.hex(),
                        "start_ns": p.time_unix_nano,
                        "duration_ns": p.duration_nano,
                        "service": resource.get("service.name"),
                        "resource": resource,
                        "sample_type": [
                            strings[p.sample_type.type_strindex],
                            strings[p.sample_type.unit_strindex],
                        ],
                        "period_type": [
                            strings[p.period_type.type_strindex],
                            strings[p.period_type.unit_strindex],
                        ],
                        "period": p.period,
                        "build_ids": sorted(build_ids),
                        "samples": samples,
                    }
                )
    return windows


def decode_pyroscope(body, pprof_dir):
    req = push_pb2.PushRequest()
    req.ParseFromString(body)
    windows = []
    for series in req.series:
        labels = {l.name: l.value for l in series.labels}
        for s in series.samples:
            path = os.path.join(pprof_dir, s.ID + ".pb.gz")
            windows.append(
                {
                    "id": s.ID,
                    "service": labels.get("service_name"),
                    "labels": labels,
                    "pprof": path,
                    "pprof_bytes": len(s.raw_profile),
                    "_raw": s.raw_profile,
                }
            )
    return windows


def window_start(kind, w):
    if kind == "otlp":
        return w["start_ns"]
    # Pyroscope ids end with the window's start time (profiler-push's profile_id).
    return int(w["id"].replace("-", "")[16:], 16) & ((1 << 62) - 1)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="application/proto"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        wire_bytes = len(body)
        args = self.server.args
        encoding = self.headers.get("Content-Encoding", "identity").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding != "identity":
                self.reply(415, f"unknown Content-Encoding {encoding}".encode(), "text/plain")
                return
        except Exception as e:
            self.reply(400, f"bad gzip body: {e}".encode(), "text/plain")
            return
        try:
            if self.path == "/push.v1.PusherService/Push":
                kind = "pyroscope"
                windows = decode_pyroscope(body, args.pprof_dir)
                ok = b""
            elif self.path == "/v1development/profiles":
                kind = "otlp"
                windows = decode_otlp(body)
                ok = profiles_service_pb2.ExportProfilesServiceResponse().SerializeToString()
            else:
                self.reply(404, b"no such path", "text/plain")
                return
        except Exception as e:  # a request the official schema cannot read
            self.reply(422, f"undecodable: {e}".encode(), "text/plain")
            return
        with LOCK:
            starts = sorted({window_start(kind, w) for w in windows})
            for s in starts:
                if s not in SEEN_STARTS:
                    SEEN_STARTS.append(s)
            reject = args.reject_window and any(
                len(SEEN_STARTS) >= args.reject_window and s == SEEN_STARTS[args.reject_window - 1]
                for s in starts
            )
            if reject:
                REJECTED.append(starts)
                with open(args.out, "a") as f:
                    f.write(json.dumps({"kind": kind, "rejected": starts}) + "\n")
                self.reply(400, b"window refused by the test receiver", "text/plain")
                return
            for w in windows:
                raw = w.pop("_raw", None)
                if raw is not None:
                    with open(w["pprof"], "wb") as f:
                        f.write(raw)
                w["start_ns"] = window_start(kind, w)
            headers = {k.lower(): v for k, v in self.headers.items()}
            line = {
                "kind": kind,
                "bytes": wire_bytes,
                "decoded_bytes": len(body),
                "headers": headers,
                "windows": windows,
            }
            with open(args.out, "a") as f:
                f.write(json.dumps(line) + "\n")
        self.reply(200, ok)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pprof-dir", required=True)
    ap.add_argument("--reject-window", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    os.makedirs(args.pprof_dir, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.args = args
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # Handshakes happen in the handler threads, so a client refusing the certificate
        # blocks no one else.
        server.socket = ctx.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
