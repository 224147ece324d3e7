"""AuditService: the audit trail as the application sees it — append an extension's event, sign
checkpoints, verify the chain, read entries for export and the console. A sibling of the
Gatekeeper on the same store (``gatekeeper.audit``); the Gatekeeper appends its own entries
inside each gate's transaction and asks this service to sign when enough have piled up.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gate_core._audit import (
    GENESIS,
    GENESIS_HASH,
    AuditDraft,
    AuditEntry,
    Checkpoint,
    CheckpointSigner,
    Event,
    StoredState,
    VerifyReport,
    chain_hash,
    extends,
    read_checkpoints,
    settle,
    signature_valid,
    verify_chain,
)
from gate_core._cosign import SignatureLine, check_cosignatures, parse_checkpoint_text, parse_note
from gate_core._errors import AuditError, InvalidInput
from gate_core._hash_worker import Rehash, first_mismatch
from gate_core._merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from gate_core._models import Actor, require_storable
from gate_core._ports import AuditLog, Clock
from gate_core._proofs import NoteCheckpoint, bundle, origin_for, sign_note
from gate_core._tree import StoredNode, stored_nodes
from gate_core._tree import consistency as tree_consistency
from gate_core._tree import frontier as stored_frontier
from gate_core._tree import inclusion as tree_inclusion
from gate_core._witnessing import HttpWitnessTransport, WitnessPolicy, WitnessTransport, held_sizes, submit

log = logging.getLogger("gatehouse.audit")

_EXTENSION_EVENT = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")
# Extensions append under their own area ("lineage."), never the core's ("gate.", "decision."…).
_CORE_AREAS = frozenset(v.split(".")[0] for k, v in vars(Event).items() if k.isupper())


REHASH_FROM = 50_000


class AuditService:
    def __init__(
        self,
        log: AuditLog,
        clock: Clock,
        *,
        signer: CheckpointSigner | None = None,
        witness_path: Path | None = None,
        checkpoint_every: int = 256,
    ) -> None:
        self.log = log
        self.clock = clock
        self.signer = signer
        self.witness_path = witness_path
        self.checkpoint_every = checkpoint_every
        self._checkpointed_at: int | None = None  # log.appended when this process last signed
        self._signed_size = -1  # the head size this process last signed (checkpoint_if_moved)
        self._last: Checkpoint | None = None  # the checkpoint this process last signed
        self._tree: Frontier | None = None  # the Merkle tree's right edge at _last.size, trusted
        self._found: Checkpoint | None = None  # the newest of ours stored when this process started
        self.witnesses: WitnessPolicy | None = None
        self.transport: WitnessTransport | None = None
        # Submit to the witnesses as soon as a checkpoint is signed (a CLI command, which has no
        # sweeper). The service turns this off: its sweeper submits, so a slow witness never
        # holds up a decision whose commit happened to sign a checkpoint.
        self.submit_inline = True
        self._retry_at: dict[str, float] = {}  # witness → monotonic time of its next attempt
        self._retry_delay: dict[str, float] = {}
        self._cosigned: dict[str, int] = {}  # witness → largest size it cosigned for this process
        # From this many entries on, verify has another process re-check the chain hashes beside
        # its own scan (gate_core._hash_worker); below it, starting one costs more than it saves.
        self.rehash_from = REHASH_FROM

    def use_witnesses(self, policy: WitnessPolicy | None, transport: WitnessTransport | None = None) -> None:
        """Submit every checkpoint signed from now on to these witnesses, and require their quorum
        in :meth:`verify`."""
        self.witnesses = policy
        self.transport = transport or (HttpWitnessTransport() if policy is not None and policy.urls else None)

    def record(
        self, event: str, *, actor: Actor, payload: Mapping[str, Any], gate_id: str | None = None
    ) -> None:
        """Append an extension's event (e.g. ``lineage.retention_purged``) to the audit trail,
        chained and checkpointed like the core's own. The core's areas are refused, so no
        caller can forge a gate's history; the payload must be JSON and must not hold secrets
        or contents (it is hashed into the chain and exported as is)."""
        if not _EXTENSION_EVENT.match(event) or event.split(".")[0] in _CORE_AREAS:
            raise InvalidInput(
                f"audit event {event!r} must be 'area.name' in lower case, in an area that is not "
                f"the core's own ({', '.join(sorted(_CORE_AREAS))})"
            )
        require_storable(dict(payload), "audit payload")
        self.log.append_audit([AuditDraft(event, self.clock.now(), actor, gate_id, dict(payload))])
        self.maybe_checkpoint()

    # ------------------------------------------------------------ signing

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head — only if it extends the last checkpoint this process knows it
        signed (in memory; at start the newest one under its key in the database or the witness
        file), recomputed from there: an operator who rewrites or cuts the log, even deleting
        the later checkpoints, cannot get the running service to sign the forgery. Also
        appended to the witness file, outside the database."""
        if self.signer is None:
            return None
        last = self._last_signed()
        tree, nodes = self._tree_at(last)

        def grow(body: str) -> None:
            nodes.extend(stored_nodes(tree.append(leaf_hash(body.encode()))))

        with closing(self.log.audit_rows(from_seq=max(last.size, 1))) as rows:  # closed even if cut short
            size, head = extends(rows, last, grow)
        checkpoint = self.signer.sign(size, head, self.clock.now(), root=tree.root())
        self.log.add_checkpoint(checkpoint, nodes)
        if self.witness_path is not None:
            with self.witness_path.open("a", encoding="utf-8") as witness:
                witness.write(checkpoint.to_json() + "\n")
        self._checkpointed_at = self.log.appended
        self._signed_size = size
        self._last = checkpoint
        self._tree = tree
        self._witness_new(checkpoint)
        return checkpoint

    # ------------------------------------------------------------ witnesses

    def _witness_new(self, checkpoint: Checkpoint) -> None:
        """Ask the witnesses to cosign a checkpoint just signed. A failure is logged and retried
        (:meth:`witness_pending`), never raised into the decision or the loop that signed it."""
        if self.submit_inline:
            self._witness_now(checkpoint)

    def _witness_now(self, checkpoint: Checkpoint) -> None:
        if self.witnesses is None or self.transport is None or self.signer is None:
            return
        try:
            self._submit(checkpoint, due=list(self.witnesses.urls))
        except Exception:  # a witness problem must never undo or block the log's own work
            log.exception(
                "audit checkpoint at size %d: submitting it to the witnesses failed", checkpoint.size
            )

    def witness_pending(self, *, now: bool = False) -> list[str]:
        """Submit the newest checkpoint this process knows it signed to every witness that has not
        cosigned it yet and whose back-off (1 s doubling to 60 s) has passed: the sweeper's duty,
        and every CLI command's on exit; ``now`` ignores the back-off (the service's verify
        endpoint, so a checkpoint signed a moment ago is witnessed before it is judged). Returns
        the problems (also logged)."""
        if self.witnesses is None or self.transport is None or self.signer is None:
            return []
        last = self._last_signed()
        if last.size == 0:
            return []
        moment = time.monotonic()
        due = [name for name in self.witnesses.urls if now or self._retry_at.get(name, 0.0) <= moment]
        return self._submit(last, due=due) if due else []

    def _submit(self, checkpoint: Checkpoint, due: list[str]) -> list[str]:
        assert self.witnesses is not None
        assert self.transport is not None
        assert self.signer is not None
        # Witnesses that already cosigned this size or a later one (by this process, or as the
        # database records) are skipped without reading or hashing anything. A record that lies
        # only makes verify fail for want of their cosignature: it never passes a forgery.
        acknowledged = self.log.cosigned_sizes()
        for name, size in self._cosigned.items():
            acknowledged[name] = max(size, acknowledged.get(name, 0))
        todo = [name for name in due if acknowledged.get(name, 0) < checkpoint.size]
        if not todo:
            return []
        signed_root = self._witnessed_root(checkpoint)
        mark = NoteCheckpoint(origin_for(self.signer.public_key), checkpoint.size, signed_root)
        from_entries: list[list[bytes]] = []  # the fallback's leaves, read at most once per submission

        def proof_from(old: int) -> list[bytes]:
            return self._witness_proof(old, checkpoint, signed_root, from_entries)

        outcome = submit(
            self.witnesses,
            self.transport,
            sign_note(mark, self.signer),
            mark,
            proof_from,
            acknowledged,
            only=todo,
        )
        self.log.add_cosignatures(outcome.cosignatures, self.clock.now())
        cosigned = {c.witness for c in outcome.cosignatures}
        for name in cosigned:
            self._cosigned[name] = max(checkpoint.size, self._cosigned.get(name, 0))
        now = time.monotonic()
        for name in todo:
            if name in cosigned:
                self._retry_delay.pop(name, None)
                self._retry_at.pop(name, None)
            else:
                delay = min(60.0, self._retry_delay.get(name, 0.5) * 2)
                self._retry_delay[name], self._retry_at[name] = delay, now + delay
        for problem in outcome.problems:
            log.warning("audit checkpoint at size %d not witnessed: %s", checkpoint.size, problem)
        return outcome.problems

    def _witnessed_root(self, checkpoint: Checkpoint) -> bytes:
        """The RFC 9162 root the witnesses are asked to cosign: the one ``checkpoint`` signs (v2),
        read from it, not from the database; for a checkpoint signed before roots were (v1), the
        root of the entries that chain to its head, recomputed once from the entries."""
        if checkpoint.root is not None:
            return bytes.fromhex(checkpoint.root)
        return root(self._leaves_of(checkpoint))

    def _witness_proof(
        self, old: int, checkpoint: Checkpoint, signed_root: bytes, from_entries: list[list[bytes]]
    ) -> list[bytes]:
        """The consistency proof from ``old`` to ``checkpoint`` a witness asks for: from the stored
        tree, O(log n) rows, and checked against the signed root before it is sent. Stored nodes
        are rows an operator can edit, so a proof that does not check (an edited or missing node)
        is rebuilt from the entries, which must chain to the checkpoint's head (O(n), once per
        submission): the witness judges it against the root it holds, never our tree."""
        size = checkpoint.size
        try:
            old_root, new_root, path = tree_consistency(self.log, old, size)
            if new_root == signed_root and verify_consistency(old, size, path, old_root, signed_root):
                return path
            problem = f"the stored Merkle tree does not prove {old} → {size} under the signed root"
        except AuditError as exc:
            problem = str(exc)
        log.error("audit tree: %s; building the witnesses' consistency proof from the entries", problem)
        if not from_entries:
            from_entries.append(self._leaves_of(checkpoint))
        leaves = from_entries[0]
        if root(leaves) != signed_root:
            raise AuditError(f"entries 1…{size} do not hash to the root signed at size {size}")
        return consistency_proof(leaves, old)

    def _leaves_of(self, checkpoint: Checkpoint) -> list[bytes]:
        """The RFC 9162 leaf hashes of entries 1…size, whose chain must end in the checkpoint's
        head (the fallback's one pass over the log)."""
        size, prev = checkpoint.size, GENESIS_HASH
        leaves: list[bytes] = []
        with closing(self.log.audit_rows()) as rows:
            for seq, _event, _gate, body, prev_hash, digest in rows:
                if (
                    seq > size
                    or seq != len(leaves) + 1
                    or prev_hash != prev
                    or chain_hash(prev, body) != digest
                ):
                    break
                leaves.append(leaf_hash(body.encode()))
                prev = digest
        if len(leaves) != size or prev != checkpoint.head_hash:
            raise AuditError(
                f"the log no longer matches its checkpoint at size {size}; run `gatehouse audit verify`"
            )
        return leaves

    def _roots_at(self, sizes: Iterable[int]) -> dict[int, bytes]:
        """The RFC 9162 root of the log's first n entries for each n in ``sizes`` (those the log
        reaches), in one streaming pass with O(log n) memory."""
        wanted = sorted({n for n in sizes if n > 0})
        roots = {0: EMPTY_ROOT}
        stack: list[tuple[int, bytes]] = []  # complete subtrees, left to right: (height, hash)
        at = 0
        if not wanted:
            return roots
        with closing(self.log.audit_rows()) as rows:
            for seq, _event, _gate, body, _prev, _digest in rows:
                height, digest = 0, leaf_hash(body.encode())
                while stack and stack[-1][0] == height:
                    digest = node_hash(stack.pop()[1], digest)
                    height += 1
                stack.append((height, digest))
                if seq == wanted[at]:
                    folded = stack[-1][1]
                    for _height, left in reversed(stack[:-1]):
                        folded = node_hash(left, folded)
                    roots[seq] = folded
                    at += 1
                    if at == len(wanted):
                        break
        return roots

    def _check_witnessed(
        self,
        report: VerifyReport,
        marks: list[Checkpoint],
        public_key: Ed25519PublicKey,
        policy: WitnessPolicy,
    ) -> VerifyReport:
        """Each trusted witness's latest stored cosignature still verifies over the log's own root
        at its size (else the log was rewritten behind the witness, or the row forged), the newest
        checkpoint carries a quorum of them, and no witness holds a larger checkpoint."""

        def failed(problem: str) -> VerifyReport:
            return dataclasses.replace(report, ok=False, problem=problem)

        newest = max(marks, key=lambda c: c.size)
        origin = origin_for(public_key)
        trusted = {(k.name, k.key_id) for k in policy.keys}  # other keys, even under a trusted name: ignored
        rows = [c for c in self.log.cosignatures() if (c.witness, c.key_id) in trusted]
        # Each witness's latest cosignature within the log is enough: it cosigned only consistent
        # extensions, so a log whose root still matches there matches every earlier one too
        # (O(witnesses) roots). One beyond the log's end means entries were removed.
        within: dict[str, int] = {}
        for row in rows:
            if row.size <= report.entries:
                within[row.witness] = max(within.get(row.witness, 0), row.size)
        # Verify recomputed the root at every checkpoint's size; witnesses cosign checkpoints, so
        # a second pass over the log is needed only for a size no checkpoint here has.
        roots = dict(report.roots)
        unknown = {newest.size, *within.values()} - roots.keys()
        if unknown:
            roots |= self._roots_at(unknown)
        for row in (c for c in rows if c.size == within.get(c.witness)):
            text = NoteCheckpoint(origin, row.size, roots[row.size]).body()
            try:
                line = row.signature_line()
            except AuditError:
                return failed(
                    f"the cosignature stored for witness {row.witness} at size {row.size} is unreadable"
                )
            if row.witness in check_cosignatures(text, [line], policy.keys).valid:
                continue
            return failed(
                self._why_not_cosigned(row.note, line, policy, row.witness, row.size, roots[row.size])
            )
        beyond = max(rows, key=lambda c: c.size, default=None)
        if beyond is not None and beyond.size > report.entries:
            return failed(
                f"witness {beyond.witness} cosigned the log at size {beyond.size}, but it has "
                f"{report.entries} entries: entries {report.entries + 1}…{beyond.size} were removed"
            )
        text = NoteCheckpoint(origin, newest.size, roots[newest.size]).body()
        lines = [c.line for c in rows if c.size == newest.size]
        try:
            names = policy.require(
                text, lines, f"the newest checkpoint (size {newest.size})", now=int(time.time())
            )
        except AuditError as exc:
            return failed(str(exc))
        ahead = self._witness_ahead(policy, [c.note for c in rows if c.size == newest.size], newest.size)
        if ahead:
            return failed(ahead)
        return dataclasses.replace(report, witnessed_size=newest.size, witnesses=tuple(names))

    def _witness_ahead(self, policy: WitnessPolicy, notes: list[str], newest: int) -> str:
        """A witness holding a larger checkpoint than any in the database (asked live, where its
        URL is known) proves that later entries or checkpoints were removed."""
        if not policy.urls or not notes:
            return ""
        held = held_sizes(policy, self.transport or HttpWitnessTransport(timeout_s=5.0), notes[-1])
        beyond = {name: size for name, size in held.items() if size > newest}
        if not beyond:
            return ""
        stored_since = max((c.size for c in self.log.checkpoints()), default=0)  # signed while we read?
        beyond = {name: size for name, size in beyond.items() if size > stored_since}
        if not beyond:
            return ""
        name, size = max(beyond.items(), key=lambda item: item[1])
        return (
            f"witness {name} holds a checkpoint of size {size}, but the newest checkpoint in the database is "
            f"at size {newest}: entries or checkpoints after it were removed"
        )

    @staticmethod
    def _why_not_cosigned(
        note: str, line: SignatureLine, policy: WitnessPolicy, witness: str, size: int, log_root: bytes
    ) -> str:
        """A trusted witness's stored cosignature does not verify over the log's root: did it sign
        another root (the log changed after) or nothing at all (a forged row)?"""
        try:
            cosigned_text = parse_note(note).text
            cosigned = parse_checkpoint_text(cosigned_text)
        except AuditError:
            cosigned_text, cosigned = "", None
        if (
            cosigned is not None
            and cosigned.size == size
            and witness in check_cosignatures(cosigned_text, [line], policy.keys).valid
        ):
            return (
                f"witness {witness} cosigned the log at size {size} with root "
                f"{base64.b64encode(cosigned.root).decode()}, but entries 1…{size} now hash to "
                f"{base64.b64encode(log_root).decode()}: history was rewritten after it was witnessed"
            )
        return f"the cosignature stored for witness {witness} at size {size} does not verify (forged)"

    def _last_signed(self) -> Checkpoint:
        if self._last is not None:
            return self._last
        if self._found is None:
            self._found = self._newest_stored()
        return self._found

    def _newest_stored(self) -> Checkpoint:
        assert self.signer is not None
        key = self.signer.public_key
        # The largest stored ones first: one query at start, unless someone stored 16 forgeries.
        stored = [c for c in self.log.latest_checkpoints(16) if signature_valid(c, key)]
        if not stored:
            stored = [c for c in self.log.checkpoints() if signature_valid(c, key)]
        ours = [*stored, *(c for c in self.witness_checkpoints() if signature_valid(c, key))]
        return max(ours, key=lambda c: c.size, default=GENESIS)

    def _tree_at(self, last: Checkpoint) -> tuple[Frontier, list[StoredNode]]:
        """The Merkle tree's right edge at ``last.size`` that this signer trusts, and the nodes to
        store with the next checkpoint. Its own, in memory; else the stored edge, if its root is
        the one ``last`` signed (O(log n) rows); else recomputed from the entries, which must
        chain to ``last``'s head (once: after an upgrade, or when the table was edited or cut),
        with every node below ``last.size`` to re-store where it is missing."""
        if self._tree is not None and self._tree.size == last.size:
            return self._tree.copy(), []
        if last.root is not None:
            try:
                edge = stored_frontier(self.log, last.size)
            except AuditError as exc:
                log.error("audit tree: %s; recomputing it from the entries", exc)
            else:
                if edge.root().hex() == last.root:
                    return edge, []
                log.error(
                    "audit tree: the stored Merkle nodes disagree with the root signed at size %d "
                    "(gh_audit_tree edited); recomputing it from the entries",
                    last.size,
                )
        return self._tree_from_entries(last)

    def _tree_from_entries(self, last: Checkpoint) -> tuple[Frontier, list[StoredNode]]:
        tree = Frontier()
        nodes: list[StoredNode] = []
        head = GENESIS_HASH
        with closing(self.log.audit_rows()) as rows:
            for seq, _event, _gate, body, _prev, _digest in rows:
                if seq > last.size:
                    break
                if seq != tree.size + 1:
                    break
                head = chain_hash(head, body)
                nodes.extend(stored_nodes(tree.append(leaf_hash(body.encode()))))
        if tree.size != last.size or head != last.head_hash:
            raise AuditError(
                f"refusing to sign: the log no longer extends the last checkpoint (size {last.size}, head "
                f"{last.head_hash[:16]}…); it was rewritten or cut — run `gatehouse audit verify`"
            )
        if last.root is not None and tree.root().hex() != last.root:
            raise AuditError(
                f"refusing to sign: the entries do not hash to the root signed at size {last.size}"
            )
        return tree, nodes

    def witness_checkpoints(self) -> list[Checkpoint]:
        """The checkpoints in the witness file (none if there is no file yet)."""
        return read_checkpoints(self.witness_path) if self.witness_path is not None else []

    def maybe_checkpoint(self) -> None:
        """Sign when the log has none yet, then after every ``checkpoint_every`` entries this
        process appended (counted in memory: no read on the hot path). The service's sweeper
        also signs whenever the head moved (``checkpoint_if_moved``), so no tail stays unsigned
        for long."""
        if self.signer is None:
            return
        if self._checkpointed_at is None:
            if not self.log.checkpoints():
                self._checkpoint_after_commit()
                return
            self._checkpointed_at = 0
        if self.log.appended - self._checkpointed_at >= self.checkpoint_every:
            self._checkpoint_after_commit()

    def _checkpoint_after_commit(self) -> None:
        """Sign on the hot path, after the caller's change committed: a refusal (the log was
        rewritten behind this process) is logged loudly, not raised into a decision that
        already stands; the sweeper and `gatehouse audit verify` report it again."""
        try:
            self.checkpoint()
        except AuditError as exc:
            log.error("audit checkpoint refused: %s", exc)
            self._checkpointed_at = self.log.appended  # retried after the next batch, not every call

    def checkpoint_if_moved(self) -> Checkpoint | None:
        """Sign the head if it moved (on any replica) since this process last signed it."""
        if self.signer is None or self.log.audit_head()[0] == self._signed_size:
            return None
        return self.checkpoint()

    def checkpoint_if_unsigned(self) -> Checkpoint | None:
        """Sign the head if no stored checkpoint covers it yet: a short-lived process (one CLI
        command) leaves no unsigned tail behind for an operator to rewrite unnoticed."""
        if self.signer is None:
            return None
        size = self.log.audit_head()[0]
        if max((c.size for c in self.log.checkpoints()), default=0) >= size and size:
            return None
        return self.checkpoint()

    # ------------------------------------------------------------ reading

    def verify(
        self,
        extra_checkpoints: Iterable[Checkpoint] = (),
        *,
        public_key: Ed25519PublicKey | None = None,
        witnesses: WitnessPolicy | None = None,
    ) -> VerifyReport:
        """Recompute the chain, check every checkpoint (stored ones, the one this process last
        signed, and ``extra_checkpoints``, e.g. a witness file's or an auditor's) with
        ``public_key`` — by default the signer's; with neither this raises AuditError, never
        skips — and check every gate's status and decisions against the replayed log.

        Gates that change while the log is read (a live service) are left out of the state
        check: the state is read before and after the scan and only gates equal in both count.

        With ``witnesses`` (by default those configured for this log), the newest checkpoint must
        carry a quorum of their valid cosignatures, each witness's latest stored cosignature must
        still verify over the log's RFC 9162 root at its size, and no witness reached may hold a
        larger checkpoint than the database's newest."""
        key = public_key or (self.signer.public_key if self.signer else None)
        # Our last checkpoint is read before the stored ones: it is stored before it is kept, so
        # one signed meanwhile (the sweeper's thread) is never mistaken for a deleted one.
        last = self._last
        stored = self.log.checkpoints()
        elsewhere = [*extra_checkpoints, *([last] if last is not None else [])]
        head = self.log.audit_head()
        before = self.log.stored_state()

        def settled() -> StoredState:
            # Every audited change moves the head in its own transaction: if the head did not
            # move, the state read before the scan is the state now (one read of ~400,000 rows
            # fewer on a million-entry log).
            if self.log.audit_head() == head:
                return before
            return settle(before, self.log.stored_state())

        rehash = self.log.rehash_elsewhere() if head[0] >= self.rehash_from else None
        try:
            report = verify_chain(
                self.log.audit_rows(),
                [*stored, *elsewhere],
                key,
                settled,
                self.log.tree_rows,
                None if rehash is None else lambda upto: self._rehashed(rehash, upto),
            )
        finally:
            if rehash is not None:
                rehash.close()
        if not report.ok:
            return report
        # Every checkpoint is added to the database first; one held elsewhere that the database
        # lacks was deleted from it (all verified above, so each is genuine and matches the log).
        kept = {(c.size, c.head_hash, c.signature) for c in stored}
        for mark in sorted(elsewhere, key=lambda c: c.size):
            if (mark.size, mark.head_hash, mark.signature) not in kept:
                return VerifyReport(
                    False,
                    report.entries,
                    report.head_hash,
                    report.checkpoints_checked,
                    mark.size or 1,
                    f"no signed checkpoint at size {mark.size} in the database, though one was "
                    "signed and kept elsewhere (checkpoints deleted)",
                )
        policy = witnesses or self.witnesses
        if policy is None or report.entries == 0:
            return report
        assert key is not None  # verify_chain raised without one
        return self._check_witnessed(report, [*stored, *elsewhere], key, policy)

    def _rehashed(self, rehash: Rehash, upto: int) -> tuple[int, str] | None:
        """The first entry up to ``upto`` whose stored hash is not its content's, as the other
        process found it — with whatever it did not reach (entries appended since it read the
        log, or everything if it failed) hashed here: a failed helper costs time, never a check."""
        answer = rehash.answer()
        checked_to = 0
        if "error" in answer:
            log.warning("audit verify: hashing in this process instead (%s)", answer["error"])
        elif answer["bad_seq"] is not None and answer["bad_seq"] <= upto:
            return int(answer["bad_seq"]), str(answer["bad_prev"])
        else:
            checked_to = int(answer["last_seq"]) if answer["bad_seq"] is None else upto
        if checked_to >= upto:
            return None
        with closing(self.log.audit_rows(from_seq=checked_to + 1)) as rows:
            rest = ((seq, body, prev, digest) for seq, _, _, body, prev, digest in rows)
            found = first_mismatch(itertools.takewhile(lambda row: row[0] <= upto, rest))
        return None if found["bad_seq"] is None else (int(found["bad_seq"]), str(found["bad_prev"]))

    # ------------------------------------------------------------ proofs

    def _signed_root(self, covering: int) -> tuple[Checkpoint, bytes]:
        """The newest checkpoint this signer knows with a Merkle root, covering entry ``covering``
        — signing one when there is none (signing refuses a forked log first)."""
        if self.signer is None:
            raise AuditError("no signing key: proofs need a signed checkpoint (run `gatehouse init`)")
        mark = self._last_signed()
        if mark.root is None or mark.size < covering or mark.size == 0:
            mark = self.checkpoint() or mark
        if mark.root is None or mark.size < covering:
            raise InvalidInput(f"no entry {covering}: the log has {mark.size}")
        if not self.submit_inline:
            self._witness_now(mark)  # a bundle should carry the cosignatures of its checkpoint
        return mark, bytes.fromhex(mark.root)

    def _note(self, size: int, tree_root: bytes) -> str:
        """The signed checkpoint note for ``size``, followed by the witnesses' cosignatures on this
        very root (tlog-cosignature), one line per witness: signed-note verifiers may reject a
        key's repeated line."""
        assert self.signer is not None
        note = sign_note(NoteCheckpoint(origin_for(self.signer.public_key), size, tree_root), self.signer)
        cosigned = {c.witness: c.line for c in self.log.cosignatures(size) if c.root == tree_root}
        return note + "".join(f"{line}\n" for line in cosigned.values())

    def prove(self, seq: int) -> str:
        """An inclusion bundle for entry ``seq``: the entry, its RFC 9162 inclusion proof against
        the newest signed root that covers it, and that root as a signed checkpoint note —
        everything :func:`verify_bundle` needs but the public key. O(log n) rows: the path comes
        from the stored tree and is checked against the signed root before it is handed out, so
        an edited node or entry is refused here, never proved."""
        if seq < 1:
            raise InvalidInput(f"no entry {seq}: entries are numbered from 1")
        mark, signed = self._signed_root(seq)
        try:
            body, path = tree_inclusion(self.log, seq - 1, mark.size)
        except AuditError as exc:
            raise AuditError(f"refusing to prove entry {seq}: {exc}") from exc
        if not verify_inclusion(leaf_hash(body.encode()), seq - 1, mark.size, path, signed):
            raise AuditError(
                f"refusing to prove entry {seq}: the stored entry or Merkle tree does not match the root "
                f"signed at size {mark.size} (edited behind the log's back) — run `gatehouse audit verify`"
            )
        return bundle(body, seq - 1, mark.size, path, self._note(mark.size, signed))

    def consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        """A consistency proof that the tree of ``old`` entries is a prefix of the tree of
        ``new`` (default: the newest signed root), with both roots and a signed note for ``new``.
        Read from the stored tree in O(log n) rows and checked before it is handed out: ``new``'s
        root against the signed one (by a second consistency proof when ``new`` is older)."""
        mark, signed = self._signed_root(max(new or 0, 1))
        new = mark.size if new is None else new
        if not 0 <= old <= new <= mark.size:
            raise InvalidInput(f"need 0 <= OLD <= NEW <= {mark.size} (the log's signed size)")
        try:
            old_root, new_root, path = tree_consistency(self.log, old, new)
            if new != mark.size:
                _, _, onward = tree_consistency(self.log, new, mark.size)
                if not verify_consistency(new, mark.size, onward, new_root, signed):
                    raise AuditError(f"the stored tree's root at {new} is not a prefix of the signed one")
            elif new_root != signed:
                raise AuditError(f"the stored tree's root at {new} is not the signed one")
            if not verify_consistency(old, new, path, old_root, new_root):
                raise AuditError(f"the stored tree does not prove {old} → {new}")
        except AuditError as exc:
            raise AuditError(f"refusing to prove consistency: {exc} — run `gatehouse audit verify`") from exc
        return {
            "old_size": old,
            "new_size": new,
            "old_root": base64.b64encode(old_root).decode(),
            "new_root": base64.b64encode(new_root).decode(),
            "proof": [base64.b64encode(p).decode() for p in path],
            "checkpoint": self._note(new, new_root),
        }

    def entries(self, after_seq: int = 0) -> Iterator[AuditEntry]:
        """Every entry after ``after_seq``, oldest first (a generator holding a read connection
        until it is exhausted or closed)."""
        return self.log.audit_entries(after_seq=after_seq)

    def size(self) -> int:
        """How many entries the trail holds."""
        return self.log.audit_head()[0]
