"""The HDF5 file of protein embeddings that `prottrans-embed` writes (and each shard of its Beam job).

One dataset per protein, keyed by its id (the header's first word, made a safe HDF5 name: ``%`` → ``%25``, ``/`` →
``%2F``, a leading ``.`` → ``%2E``; the id itself is the dataset's ``id`` attribute), as bio_embeddings and
ProtTrans write them: ``[length, hidden]`` per residue or ``[hidden]`` per protein; with both, under the groups
``per_residue`` and ``per_protein``. The file's ``prottrans_embed`` attribute (JSON) records the model's identity,
the layout and the dtype; every dataset carries a Fletcher-32 checksum.

Until a run is complete the file is ``OUT.h5.partial``, flushed after every chunk; the finished file is renamed to
OUT.h5. One run writes it at a time: the command holds ``OUT.h5.lock`` (:mod:`beam_jobs.output_lock`) before it
touches either file. A rerun resumes: an entry is kept when its id is the record's exactly, the
digest of the sequence it was embedded from (the ``sequence_sha256`` attribute) is the record's, and its checksum
and values verify; otherwise it is embedded again (an entry written before digests were stored, too). A partial
file left unreadable by a kill is started again, and a file of another model, layout or dtype is refused.
Rejected records are listed, once per run, in ``OUT.h5.rejects.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource

import h5py
import numpy as np

from serving.model_input import RejectsFile

HEADER = "prottrans_embed"
FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"
SEQUENCE_DIGEST = "sequence_sha256"  # attribute: what an entry was embedded from, checked on resume


class OutputError(ValueError):
    """OUT.h5 cannot be used for this run; the message says why and what to do."""


# Room kept free beyond each entry's bytes, for HDF5's metadata and the final flush.
SPACE_MARGIN = 4 << 20


def room_for(path: str) -> int:
    """Bytes `path` may still grow by: the free space of its file system, and the file-size limit (``ulimit -f``)
    less its size."""
    stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    room = stat.f_bavail * stat.f_frsize
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit != resource.RLIM_INFINITY:
        room = min(room, limit - (os.path.getsize(path) if os.path.exists(path) else 0))
    return room


def sequence_digest(sequence: str) -> str:
    return hashlib.sha256(sequence.encode("ascii")).hexdigest()


def dataset_key(record_id: str) -> str:
    """`record_id` as an HDF5 dataset name: no ``/`` (a path separator) and no leading ``.`` (``.`` names the group
    itself), reversibly. (Ids with control characters or bytes that are not UTF-8 are rejected before this.)"""
    key = record_id.replace("%", "%25").replace("/", "%2F")
    return "%2E" + key[1:] if key.startswith(".") else key


def layout_of(per_residue: bool, per_protein: bool) -> list[str]:
    """The groups a file holds, as its header records them."""
    return [kind for kind, wanted in (("per_residue", per_residue), ("per_protein", per_protein)) if wanted]


def layout_groups(handle: h5py.File, per_residue: bool, per_protein: bool) -> dict[str, h5py.Group]:
    """Where each kind of embedding goes: the file itself for one kind, groups ``per_residue``/``per_protein``
    for both (keyed ``residues`` and ``protein``, the :class:`ProteinEmbedding` fields)."""
    both = per_residue and per_protein
    groups = {}
    if per_residue:
        groups["residues"] = handle.require_group("per_residue") if both else handle
    if per_protein:
        groups["protein"] = handle.require_group("per_protein") if both else handle
    return groups


def store(groups: dict[str, h5py.Group], key: str, record_id: str, embedding, dtype: str,
          digest: str | None = None) -> None:
    """One protein's datasets, in `dtype`, with a Fletcher-32 checksum, its id and (given) the digest of its
    sequence (:func:`sequence_digest`) as attributes.

    Refused (OutputError) when the disk or the file-size limit leaves no room for it: HDF5 that fails a write
    part-way leaves the file's metadata broken and can crash the process (measured: a segmentation fault under
    ``ulimit -f``), so it is never asked to."""
    path = next(iter(groups.values())).file.filename
    needed = SPACE_MARGIN + sum(np.size(getattr(embedding, kind)) for kind in groups) * np.dtype(dtype).itemsize
    room = room_for(path)
    if needed > room:
        raise OutputError(f"{path}: no room to write {record_id!r}: {max(room, 0) / 2**20:.1f} MiB left (free disk "
                          f"space or the file-size limit), {needed / 2**20:.1f} MiB needed; make room")
    for kind, group in groups.items():
        data = np.asarray(getattr(embedding, kind)).astype(dtype)
        dataset = group.create_dataset(key, data=data, fletcher32=True, chunks=data.shape or None)
        dataset.attrs["id"] = record_id
        if digest is not None:
            dataset.attrs[SEQUENCE_DIGEST] = digest


class Output:
    """OUT.h5 of one run, written as OUT.h5.partial, with its rejects file (rewritten by each run).

    `identity` names the model (its digest or served version), `layout` the groups written, `dtype` the stored
    precision; a file already there that records others is refused.
    """

    def __init__(self, path: str, identity: str, per_residue: bool, per_protein: bool, dtype: str = "float32"):
        self.path = path
        self.partial = path + PARTIAL_SUFFIX
        self.dtype = dtype
        self.header = {"format_version": FORMAT_VERSION, "model": identity, "layout": layout_of(per_residue, per_protein),
                       "dtype": dtype}
        self.restarted = self._take_over_earlier()
        self.file = h5py.File(self.partial, "a")
        if HEADER not in self.file.attrs:
            self.file.attrs[HEADER] = json.dumps(self.header)
        self.groups = layout_groups(self.file, per_residue, per_protein)
        self.rejects = RejectsFile(path)
        self.reject = self.rejects.record
        self.repaired = self.changed = 0

    def _take_over_earlier(self) -> bool:
        """Move a finished OUT.h5 back to OUT.h5.partial to extend it, after checking that it records this run's
        model, layout and dtype. True when an unreadable partial file of an interrupted run was discarded."""
        if os.path.exists(self.partial):
            try:
                self._check_header(self.partial)
            except OSError as error:  # a kill before the first flush leaves no readable superblock: nothing to keep
                if "lock" in str(error).lower():  # HDF5's own file lock: another program has it open
                    raise OutputError(f"{self.partial} is open in another program ({error}); close it and rerun "
                                      "to resume") from error
                os.remove(self.partial)
                return True
        elif os.path.exists(self.path):
            try:
                self._check_header(self.path)
            except OSError as error:
                raise OutputError(f"{self.path} exists but is not a readable HDF5 file ({error}); move it away or "
                                  "choose another output file") from error
            os.replace(self.path, self.partial)
        return False

    def _check_header(self, path: str) -> None:
        with h5py.File(path, "r") as handle:
            if HEADER not in handle.attrs:
                if len(handle) == 0:
                    return
                raise OutputError(f"{path} was not written by prottrans-embed (it has no {HEADER!r} attribute); "
                                  "choose another output file")
            found = json.loads(handle.attrs[HEADER])
        differences = [f"{name} {found.get(name)!r} there, {value!r} now" for name, value in self.header.items()
                       if found.get(name) != value]
        if differences:
            raise OutputError(f"{path} holds other embeddings ({'; '.join(differences)}): a rerun can only add to "
                              "a file of the same model, layout and dtype; choose another output file or delete it")

    def done(self, key: str, record_id: str, sequence: str) -> bool:
        """True when every group holds `key` for exactly `record_id`, embedded from `sequence`, intact. Otherwise
        the entry is deleted to be embedded again, and counted: `changed` (another id or sequence, or no digest
        recorded) or `repaired` (damaged)."""
        present = [group for group in self.groups.values() if key in group]
        if not present:
            return False
        digest = sequence_digest(sequence)
        same = all(group[key].attrs.get("id") == record_id and group[key].attrs.get(SEQUENCE_DIGEST) == digest
                   for group in present)
        try:
            intact = same and all(np.isfinite(group[key][()]).all() for group in present)
        except OSError:  # Fletcher-32 mismatch: bytes changed since they were written
            intact = False
        if intact and len(present) == len(self.groups):
            return True
        if not same:
            self.changed += 1
        elif not intact:
            self.repaired += 1
        for group in present:
            del group[key]
        return False

    def write(self, key: str, record_id: str, sequence: str, embedding) -> None:
        store(self.groups, key, record_id, embedding, self.dtype, sequence_digest(sequence))

    def flush(self) -> None:
        self.file.flush()
        self.rejects.flush()

    def close(self, complete: bool) -> None:
        """Close both files; a complete run's file becomes OUT.h5."""
        self.file.close()
        self.rejects.close()
        if complete:
            os.replace(self.partial, self.path)
