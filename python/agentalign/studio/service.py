"""The studio's work, apart from HTTP: serve pairs, record answers, refit the ensemble, run jobs.

Pairs for a personality: a pair made before that still wants answers (overlap > 1, or shown to
someone who left) first; else a new one: a held-out pair with probability `heldout_share`
(random, never trained on, no budget); else random while the personality has fewer than
`warmup_labels` training labels or no ensemble yet, or with probability `random_share`; else
the candidate pair (of `candidates` random ones from the pool) the ensemble disagrees on most.
The left/right order is drawn per showing and stored with the answer.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.studio import select
from agentalign.studio.jobs import Jobs
from agentalign.studio.media import Clips
from agentalign.studio.play import Player
from agentalign.studio.pool import feature_path, load_features
from agentalign.studio.state import Served, StudioError, StudioState
from agentalign.studio.studio_config import StudioSettings


class Studio:
    def __init__(self, run: Path, settings: StudioSettings, folder: Path | None = None):
        self.run = Path(run)
        for stage in ("sft", "pretrain"):
            if not (self.run / stage).is_dir():
                raise StudioError(f"run {self.run}: has no {stage}/ folder; point --run at a "
                                  "folder made by `agentalign pipeline`")
        self.settings = settings
        self.folder = Path(folder) if folder is not None else self.run / "studio"
        self.labels = self.folder / "labels"
        self.local = threading.local()
        StudioState(self.labels).close()  # create or migrate the store once, up front
        self.jobs = Jobs(self.folder / "jobs")
        self.clips = Clips(self.labels)
        self.player = Player([self.folder / "personalities", self.run / "personalities"])
        self.rng = np.random.default_rng(settings.pool.seed)
        self.lock = threading.Lock()
        self.serving = threading.Lock()  # one pair chosen at a time (the rng, the in-flight rule)
        self.ensembles: dict[str, tuple[select.Ensemble, int]] = {}
        self.features: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None

    @property
    def state(self) -> StudioState:
        """This thread's connection (SQLite connections stay in their thread)."""
        if not hasattr(self.local, "state"):
            self.local.state = StudioState(self.labels)
        return self.local.state

    # -- pool and features ---------------------------------------------------------------------

    def start_pool(self) -> dict[str, Any] | None:
        """Record the pool (and its features) in the background, unless it is complete or
        being recorded. Features of an older version are computed again by the same job."""
        pool = self.state.pool()
        kind = self.settings.pool.features
        complete = pool and all(feature_path(self.labels, p["corpus"], kind).exists()
                                for p in pool)
        jobs = [j for j in self.jobs.list() if j["kind"] == "pool"]
        if complete or any(j["state"] not in ("done", "failed", "cancelled") for j in jobs):
            return None
        name = "pool" if not jobs else f"pool-{len(jobs) + 1}"
        return self.jobs.start(name, {"kind": "pool", **self._job_spec()})

    def _job_spec(self) -> dict[str, Any]:
        return {"run": str(self.run.resolve()), "labels": str(self.labels.resolve()),
                "studio": str(self.folder.resolve()),
                "pool": self.settings.pool.to_dict(),
                "stages": {k: list(v) for k, v in self.settings.stages.items()}}

    def pool_features(self) -> tuple[np.ndarray, np.ndarray]:
        """(trajectory ids [N], features [N, D]) of the active pool corpora that have features."""
        pool = self.state.pool()
        key = tuple(p["corpus"] for p in pool)
        with self.lock:
            if self.features is None or self.features[0] != key:
                ids, rows = [], []
                for p in pool:
                    f = load_features(self.labels, p["corpus"], self.settings.pool.features)
                    if f is None:
                        continue
                    found = self.state.db.execute(
                        "SELECT id, episode FROM trajectories WHERE corpus = ? ORDER BY episode",
                        (p["corpus"],)).fetchall()
                    ids += [r[0] for r in found]
                    rows.append(f[[r[1] for r in found]])
                self.features = (key, np.array(ids, dtype=np.int64),
                                 np.concatenate(rows) if rows else np.zeros((0, 1), np.float32))
            return self.features[1], self.features[2]

    # -- pairs ---------------------------------------------------------------------------------

    def next_pair(self, personality: str, annotator: str) -> Served:
        state = self.state
        state.personality(personality)
        if not isinstance(annotator, str) or not annotator.strip():
            raise StudioError("no annotator: tell the studio your name before labelling")
        annotator = annotator.strip()
        with self.serving:
            pair = state.waiting_pair(personality, annotator, self.settings.overlap)
            if pair is None:
                pair = self._new_pair(personality)
            state.mark_served(pair, personality, annotator)
            shown_left = int(self.rng.random() < 0.5)
        info = state.pair_row(pair, personality)
        first, second = info["first"], info["second"]
        left, right = (second, first) if shown_left else (first, second)
        return Served(pair, info["how"], left, right, shown_left)

    def _new_pair(self, personality: str) -> int:
        """Draw how the pair is chosen once (so retries cannot shift the shares), then a pair
        of that kind this personality was never asked about."""
        ids, features = self.pool_features()
        if len(ids) < 2:
            raise StudioError("the pool of rollouts is still being recorded: wait for the pool "
                              "job on the Learn page")
        cfg = self.settings
        trained = len(self.state.decisive(personality, "train"))
        if trained >= cfg.budget:
            raise StudioError(f"{personality!r} has used its label budget ({cfg.budget} "
                              "training labels): align it on the Learn page, or raise `budget`")
        if self.rng.random() < cfg.heldout_share:
            how = "heldout"
        else:
            ensemble = self.ensembles.get(personality)
            random_now = (trained < cfg.warmup_labels or ensemble is None
                          or self.rng.random() < cfg.random_share)
            how = "random" if random_now else "active"
        asked = self.state.asked(personality)
        position = {int(t): i for i, t in enumerate(ids)}
        seen = {(position[a], position[b]) for a, b in asked if a in position and b in position}
        seen |= {(b, a) for a, b in seen}
        for _ in range(50):
            if how == "active":
                ensemble = self.ensembles[personality][0]
                picks = select.candidate_pairs(ensemble, features, cfg.candidates, self.rng,
                                               cfg.uncertainty)
                keep = [i for i, (a, b) in enumerate(picks) if a != b and (a, b) not in seen]
                if not keep:
                    continue
                picks = picks[keep]
                a, b = picks[select.most_uncertain(ensemble, features, picks, cfg.uncertainty)]
            else:
                a, b = self.rng.choice(len(ids), size=2, replace=False)
                if (a, b) in seen:
                    continue
            pair = self.state.make_pair(int(ids[a]), int(ids[b]), personality, how)
            if pair is not None:
                return pair
            seen |= {(int(a), int(b)), (int(b), int(a))}
        raise StudioError("no new pair found: the pool is exhausted for this personality; "
                          "align it to add its rollouts to the pool")

    def answer(self, personality: str, pair: int, answer: str, shown_left: int,
               annotator: str, request: str | None) -> dict[str, Any]:
        label, created = self.state.record(pair, personality, answer=answer,
                                           shown_left=shown_left, annotator=annotator,
                                           request=request, overlap=self.settings.overlap)
        if created:
            self.maybe_refit(personality)
        return {"label": label, "created": created}

    # -- the ensemble --------------------------------------------------------------------------

    def maybe_refit(self, personality: str) -> None:
        """Refit in a background thread every `refit_every` decisive training labels."""
        trained = len(self.state.decisive(personality, "train"))
        last = self.ensembles.get(personality, (None, 0))[1]
        if trained - last >= self.settings.refit_every:
            threading.Thread(target=self.refit, args=(personality,), daemon=True).start()

    def labelled(self, personality: str, split: str) -> tuple[np.ndarray, ...]:
        """(first, second, target) of `split`'s decisive labels as rows of `pool_features`
        (pairs whose runs left the pool are left out); target = P(first better)."""
        ids, _ = self.pool_features()
        index = {int(t): i for i, t in enumerate(ids)}
        found = [r for r in self.state.decisive(personality, split)
                 if r[0] in index and r[1] in index]
        first = np.array([index[r[0]] for r in found], dtype=np.int64)
        second = np.array([index[r[1]] for r in found], dtype=np.int64)
        return first, second, np.array([1.0 - r[2] for r in found])  # choice 0: first better

    def fit(self, personality: str) -> select.Ensemble | None:
        """The ensemble on the training labels so far (None with fewer than two)."""
        train = self.labelled(personality, "train")
        if len(train[0]) < 2:
            return None
        return select.fit(self.pool_features()[1], *train, members=self.settings.members,
                          seed=len(train[0]))

    def refit(self, personality: str) -> float | None:
        ensemble = self.fit(personality)
        if ensemble is None:
            return None
        trained = len(self.labelled(personality, "train")[0])
        heldout = self.labelled(personality, "heldout")
        accuracy = select.accuracy(ensemble, self.pool_features()[1], *heldout) \
            if len(heldout[0]) else None
        with self.lock:
            self.ensembles[personality] = (ensemble, trained)
        self.state.add_fit(personality, trained, len(heldout[0]), accuracy)
        return accuracy

    # -- align ---------------------------------------------------------------------------------

    def start_align(self, personality: str, start: str | None = None) -> dict[str, Any]:
        """Align `personality` from the SFT agent, or from the newest aligned policy of the
        personality `start`: a designer teaches in steps (first "pass by the campfire", then
        "... and on to the middle pad" from that one), which RL cannot find in one go when the
        SFT agent never does the whole of it (docs/studio.md, "Teaching in steps")."""
        p = self.state.personality(personality)
        if self.jobs.busy(personality):
            raise StudioError(f"an align job for {personality!r} is running; wait for it")
        policy = self.aligned_policy(start) if start else None
        stats, cfg = self.state.stats(personality), self.settings
        if stats["train_labels"] < 2 or stats["heldout_labels"] < 1:
            raise StudioError(f"{personality!r} has {stats['train_labels']} training and "
                              f"{stats['heldout_labels']} held-out labels: label more pairs "
                              "(the reward model needs both)")
        n = sum(1 for j in self.jobs.list() if j.get("personality") == personality) + 1
        card = {"rubric": p["rubric"], "pad": p["pad"], "intent": p["intent"],
                "labels": stats["labels"], "train_labels": stats["train_labels"],
                "heldout_labels": stats["heldout_labels"],
                "annotators": sorted(stats["by_annotator"]),
                "pairs_chosen": {"random": stats["by_how"].get("random", 0),
                                 "active": stats["by_how"].get("active", 0),
                                 "heldout": stats["by_how"].get("heldout", 0),
                                 "rule": f"{cfg.uncertainty} of {cfg.members} linear "
                                         f"models on {cfg.pool.features} features "
                                         f"(studio.select), {cfg.warmup_labels} random "
                                         f"first, {cfg.random_share:.0%} random after"},
                "agreement": stats["agreement"], "aligned_from": start or "sft"}
        return self.jobs.start(f"align-{personality}-{n}", {
            "kind": "align", "personality": personality, "pad": p["pad"], "card": card,
            "policy": str(policy.resolve()) if policy else None, **self._job_spec()})

    def aligned_policy(self, personality: str) -> Path:
        """The policy of `personality`'s newest finished align job."""
        self.state.personality(personality)  # a one-line error naming the known ones
        done = [j for j in self.jobs.list() if j.get("kind") == "align" and
                j.get("personality") == personality and j["state"] == "done"]
        if not done:
            raise StudioError(f"personality {personality!r} has no finished align job to start "
                              "from: align it first")
        return self.jobs.folder / max(done, key=lambda j: j["created"])["name"] / "align"

    def close(self) -> None:
        self.jobs.stop_all()
