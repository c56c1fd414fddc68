#!/usr/bin/python3
"""Minimal libtorrent client driven by the chihaya end-to-end tests.

Run it with Debian's /usr/bin/python3: python3-libtorrent is only installed
for that interpreter.

  seed:  keep serving the torrent until killed (or until our parent dies).
  leech: exit 0 as soon as the download is complete and flushed to disk,
         exit 1 on timeout or on an error reported by libtorrent.

Every alert is printed with a timestamp so that the Go test can show the
tail of this log when a transfer fails.
"""

import argparse
import os
import sys
import time

import libtorrent as lt


def log(msg):
    print("%.3f %s" % (time.time(), msg), flush=True)


def flush(ses, h):
    """Waits until libtorrent has flushed the torrent's data to disk."""
    h.save_resume_data(lt.save_resume_flags_t.flush_disk_cache)
    deadline = time.time() + 30
    while time.time() < deadline:
        ses.wait_for_alert(250)
        for a in ses.pop_alerts():
            log("%s: %s" % (type(a).__name__, a.message()))
            if isinstance(a, (lt.save_resume_data_alert,
                              lt.save_resume_data_failed_alert)):
                return
    log("no save_resume_data reply; exiting anyway")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("seed", "leech"), required=True)
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--dir", required=True, help="save path")
    ap.add_argument("--listen", required=True,
                    help='listen interface, "127.0.0.1:PORT" or "[::1]:PORT"')
    ap.add_argument("--timeout", type=float, default=90.0,
                    help="leech: give up after this many seconds")
    args = ap.parse_args()

    settings = {
        # The tracker must be the only way the two clients can meet.
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "dht_bootstrap_nodes": "",
        # Bind to the loopback address of the family under test, so the
        # peer connection has to use that family.
        "listen_interfaces": args.listen,
        # uTP would be tried first against peers that may not speak it
        # (aria2); plain TCP keeps the connection path deterministic.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # libtorrent clamps the tracker's interval to at least 300 s by
        # default; the test tracker asks for 5 s and we want to honour it.
        "min_announce_interval": 1,
        # With SSRF mitigation (on by default) libtorrent refuses to announce
        # to a loopback tracker at /<passkey>/announce ("blocked by SSRF
        # mitigation"); passkey URLs must work for the private-mode tests.
        "ssrf_mitigation": False,
        # Every peer of the test lives on the same loopback address.
        "allow_multiple_connections_per_ip": True,
        "alert_mask": (lt.alert.category_t.error_notification
                       | lt.alert.category_t.status_notification
                       | lt.alert.category_t.tracker_notification
                       | lt.alert.category_t.connect_notification
                       | lt.alert.category_t.peer_notification
                       | lt.alert.category_t.storage_notification),
        "user_agent": "chihaya-e2e libtorrent/" + lt.__version__,
    }
    # flags=0: do not load the default plugins, among them ut_pex (peer
    # exchange). The torrent is private anyway, which also disables it.
    ses = lt.session(settings, 0)

    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(args.torrent)
    atp.save_path = args.dir
    h = ses.add_torrent(atp)
    log("added %s mode=%s listen=%s libtorrent=%s"
        % (atp.ti.info_hashes().v1, args.mode, args.listen, lt.__version__))

    parent = os.getppid()
    deadline = time.time() + args.timeout
    last_status, last_status_time = "", 0.0
    while True:
        ses.wait_for_alert(250)
        done = False
        for a in ses.pop_alerts():
            log("%s: %s" % (type(a).__name__, a.message()))
            if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                log("fatal: %s" % a.message())
                return 1
            if args.mode == "leech" and isinstance(a, lt.torrent_finished_alert):
                done = True
        now = time.time()
        s = h.status()
        status = "state=%s progress=%.3f peers=%d down=%d up=%d" % (
            s.state, s.progress, s.num_peers,
            s.total_payload_download, s.total_payload_upload)
        # Log on change, and now and then as a sign of life.
        if status != last_status or now - last_status_time >= 10:
            last_status, last_status_time = status, now
            log("status " + status)
        if args.mode == "leech" and s.is_seeding:
            done = True
        if done:
            # Make sure every block is written before reporting success:
            # a piece can pass its hash check while its write is still
            # queued in a disk thread.
            flush(ses, h)
            del h
            del ses
            log("download complete")
            return 0
        # The test kills our process group, but if the test binary itself
        # dies we are reparented: stop instead of lingering.
        if os.getppid() != parent:
            log("parent died, exiting")
            return 1
        if args.mode == "leech" and now > deadline:
            log("timeout after %.0fs" % args.timeout)
            return 1


if __name__ == "__main__":
    sys.exit(main())
