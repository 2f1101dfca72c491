#!/usr/bin/python3
"""A real RTSP server for the integration tests: gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0, through python3-gi) serving video files, looped, as
H.264 or H.265 over RTP, optionally behind Basic authentication. Each client
plays its file from the start, once.

usage: rtsp_server.py PORT [--user U --password P] MOUNT=FILE [MOUNT=FILE ...]
Prints "ready" once it listens. Files are MP4 (H.264) or MKV (H.265 or H.264).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch(path):
    demux = "qtdemux" if path.endswith(".mp4") else "matroskademux"
    # H.265 when the file says so (its hvcC box or Matroska codec id), else H.264.
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    h265 = b"hvcC" in head or b"V_MPEGH/ISO/HEVC" in head
    parse, pay = ("h265parse", "rtph265pay") if h265 else ("h264parse", "rtph264pay")
    return (
        f"( filesrc location={path} ! {demux} ! {parse} config-interval=-1 "
        f"! {pay} name=pay0 pt=96 config-interval=-1 )"
    )


def main():
    Gst.init(None)
    args = sys.argv[1:]
    port = args.pop(0)
    user = password = None
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag == "--user":
            user = args.pop(0)
        elif flag == "--password":
            password = args.pop(0)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    if user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password or ""), token)
        server.set_auth(auth)
    mounts = server.get_mount_points()
    for spec in args:
        mount, path = spec.split("=", 1)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch(path))
        # Each client gets its own pipeline, from the start of the file.
        factory.set_shared(False)
        if user is not None:
            role = Gst.Structure.from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
            factory.add_role_from_structure(role)
        mounts.add_factory("/" + mount, factory)
    if server.attach(None) == 0:
        print("could not listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
