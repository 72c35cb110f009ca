"""
Every path under ``<pki_dir>/edge``, in one place: the master's files that
live beside Salt's key store, so that masters sharing one key store (a
shared ``pki_dir`` volume) share them too. Paths only; who creates a file
and with which owner and mode is :mod:`saltext_edge.fsperm` (through
:mod:`saltext_edge.admission.files` for admission's files).

* ``admission.lock``, ``admission.inflight`` -- the key-store lock and the
  in-flight marker (:mod:`saltext_edge.admission.keystore`);
* ``nodes/<sha256(id)>.json`` -- the node index (:mod:`saltext_edge.admission.nodes`);
* ``enrollments/<id>.json`` -- the enrollments (:mod:`saltext_edge.enrollment`);
* ``sites/<site>.key`` -- site keys written by ``salt-run edge.site_key``;
* ``event.key`` -- the key that seals the fleet's events (:mod:`saltext_edge.eventauth`).

Standard library only.
"""

import hashlib
import os


def root(opts):
    """Return ``<pki_dir>/edge`` of the master options ``opts`` (not created here)."""
    return os.path.join(opts["pki_dir"], "edge")


def admission_lock(opts):
    """Return the key-store lock file, ``<pki_dir>/edge/admission.lock``."""
    return os.path.join(root(opts), "admission.lock")


def admission_inflight(opts):
    """Return the in-flight marker of a key-store write, ``<pki_dir>/edge/admission.inflight``."""
    return os.path.join(root(opts), "admission.inflight")


#: name prefix of :func:`admission_staged` files
STAGED_PREFIX = "accepting-"


def admission_staged(opts, minion_id):
    """
    Return where a key being accepted is linked before it is moved into
    ``minions/``, ``<pki_dir>/edge/accepting-<digest>`` (named by digest:
    an id may be as long as a file name may be).
    """
    digest = hashlib.sha256(minion_id.encode("utf-8")).hexdigest()[:32]
    return os.path.join(root(opts), STAGED_PREFIX + digest)


def nodes_dir(opts):
    """Return the node index's directory, ``<pki_dir>/edge/nodes``."""
    return os.path.join(root(opts), "nodes")


def node_file(opts, minion_id):
    """Return the node index file of ``minion_id`` (named by the SHA-256 of the id: any id is a safe name)."""
    return os.path.join(
        nodes_dir(opts), hashlib.sha256(minion_id.encode("utf-8")).hexdigest() + ".json"
    )


def enrollments_dir(opts):
    """Return the enrollment records' directory, ``<pki_dir>/edge/enrollments``."""
    return os.path.join(root(opts), "enrollments")


def site_key_file(opts, site):
    """Return the default file of ``site``'s key, ``<pki_dir>/edge/sites/<site>.key`` (``site`` validated by the caller)."""
    return os.path.join(root(opts), "sites", f"{site}.key")


def event_key(opts):
    """Return the event key of the master whose options are ``opts``, ``<pki_dir>/edge/event.key``."""
    return os.path.join(root(opts), "event.key")
