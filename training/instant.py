"""Instant learning: after every saved label, train the FCN's head on cached features.

The backbone (VGG16 up to fc7, or any of :mod:`training.backbones`) costs nearly
all of a prediction; the head (the 1x1 score layers on fc7, pool4 and pool3, and
the upsampling) is tiny. So when the
model predicts an image, its skip-tap features are kept (:mod:`feature_cache`),
and when the person saves that image's label, the head alone learns on the
features of every saved image in a second or two. The next prediction uses the
new head; predictions made ahead of time are refreshed from their cached
features in milliseconds.

How the head learns: in the "same" alignment the final upsampling is a fixed
bilinear x8 (x16, x32) whose output block ``[s*i, s*i+s)`` is centred on coarse
score ``i``. So the loss is taken on the coarse grid against each block's class
distribution (soft targets; blocks that are all void weigh nothing): 64x fewer
pixels than the full-size loss for FCN-8s, and the same optimum up to the
interpolation. The reference alignment (crops at odd offsets) uses the exact
full-size loss instead. The optimizer (Adam) keeps its state from save to save,
so learning accumulates; every :meth:`InstantLearner.learn` first snapshots the
head so it can be rolled back.

The fine-tune of the whole network composes with this: after a full run, call
:meth:`InstantLearner.set_backbone` with the new model; the cached features are
dropped (they belong to the old backbone) and recomputed as images are seen.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .feature_cache import FeatureCache, ImageFeatures
from .model import FCN, is_head_parameter
from .palette import VOID
from .predict import Prediction, Predictor

DEFAULT_TIME_BUDGET = 1.5  # seconds per learn(); the person is about to look at the next image
DEFAULT_PASSES = 20  # passes over the saved images when time allows
MIN_STEPS = 50  # with few saved images, more passes: one pass over 1 image teaches little
MAX_ROLLBACK = 20
# The newest images visited twice per pass (see InstantLearner). Replays of camvid-mini
# (MobileNetV3, --learn both, 30 images, three seeds, fine-tunes of about 300 steps):
# images 11-20 left 21.3 % to correct against 23.0 % with none, all 30 32.1 % against
# 33.2 %; images 21-30 (a new sequence) 26.5 % against 27.9 %, within the runs' spread.
RECENT = 5


def _as_input(t: Tensor, device: torch.device) -> Tensor:
    """Cached fp16 features as the head's fp32 input (channels-last: faster 1x1 convs)."""
    return t.to(device, torch.float32).contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class LearnReport:
    """What one :meth:`InstantLearner.learn` did; ``images`` 0 means nothing to learn from."""

    images: int
    steps: int
    passes: float  # image visits / images
    seconds: float
    loss_before: float | None  # mean loss of the first pass, and of the last one
    loss_after: float | None
    skipped: tuple[str, ...] = ()  # saved images whose features were not available

    def describe(self) -> str:
        if self.images == 0:
            return "nothing to learn from yet"
        return f"learned from {self.images} image{'s' * (self.images != 1)} in {self.seconds:.1f} s"


@dataclass
class _Sample:
    label: np.ndarray  # H x W uint8 at the network input size (255 = void)
    target: Tensor | None = None  # cached loss target for the current feature size


def head_state(model: FCN) -> dict[str, Tensor]:
    """A copy of the score and upsampling layers' weights (kilobytes to a few MB)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if is_head_parameter(k)}


def load_head_state(model: FCN, state: dict[str, Tensor]) -> None:
    """Put a :func:`head_state` back; shapes must match (same classes and widths)."""
    own = model.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            if k not in own or own[k].shape != v.shape:
                raise ValueError(f"head tensor {k} does not fit this model "
                                 f"({tuple(v.shape)} vs {tuple(own[k].shape) if k in own else 'absent'})")
            own[k].copy_(v)


def coarse_target(label: np.ndarray, num_classes: int, stride: int,
                  grid: tuple[int, int]) -> Tensor:
    """Per coarse cell: the share of each class among its ``stride x stride`` pixels.

    Returns ``(C + 1) x gh x gw`` float16: C class shares over non-void pixels and,
    last, the non-void share (the cell's weight). Pixels beyond the label (the
    padding to a multiple of 32) count as void.
    """
    gh, gw = grid
    c = num_classes
    lab = np.full((gh * stride, gw * stride), c, dtype=np.int64)  # c stands for void here
    h, w = min(label.shape[0], gh * stride), min(label.shape[1], gw * stride)
    crop = label[:h, :w].astype(np.int64)
    lab[:h, :w] = np.where(crop == VOID, c, crop)
    # One bincount over (cell, class) pairs: no per-pixel one-hot (C x H x W) in memory.
    rows = (np.arange(gh * stride) // stride)[:, None] * gw
    cells = rows + (np.arange(gw * stride) // stride)[None, :]
    flat = np.bincount((cells * (c + 1) + lab).ravel(), minlength=gh * gw * (c + 1))
    counts = torch.from_numpy(flat.reshape(gh, gw, c + 1).transpose(2, 0, 1).astype(np.float32))
    nonvoid = counts[:c].sum(0)
    shares = counts[:c] / nonvoid.clamp_min(1)
    weight = nonvoid / float(stride * stride)
    return torch.cat([shares, weight[None]]).to(torch.float16)


def soft_cross_entropy(scores: Tensor, target: Tensor) -> Tensor:
    """Mean over weighted cells of ``-sum_c share_c log softmax(scores)_c``.

    ``target`` is :func:`coarse_target`'s layout with a batch dimension.
    """
    shares, weight = target[:, :-1].float(), target[:, -1].float()
    per_cell = -(shares * F.log_softmax(scores.float(), 1)).sum(1)
    return (per_cell * weight).sum() / weight.sum().clamp_min(1e-6)


class InstantLearner:
    """Predicts with feature caching and trains the head of ``predictor``'s model.

    Not thread-safe: one thread (the app's inference worker, or the simulator)
    owns both the predictor and the learner.
    """

    def __init__(self, predictor: Predictor, cache: FeatureCache | None = None, *,
                 backbone_id: str | None = None, lr: float = 1e-3,
                 time_budget: float = DEFAULT_TIME_BUDGET, max_passes: int = DEFAULT_PASSES,
                 min_steps: int = MIN_STEPS, batch_size: int = 8, seed: int = 0,
                 recent: int | None = None) -> None:
        recent = RECENT if recent is None else recent
        if not lr > 0 or not time_budget > 0 or max_passes < 1 or batch_size < 1 or recent < 0:
            raise ValueError("lr and time_budget must be positive, max_passes and batch_size >= 1, "
                             "recent >= 0")
        # The newest ``recent`` images count twice in every pass: the next image to label
        # is most like the last few (frames of one sequence, one site's photos).
        self.recent = recent
        self.predictor = predictor
        self.cache = cache if cache is not None else FeatureCache()
        self.lr = lr
        self.time_budget = time_budget
        self.max_passes = max_passes
        self.min_steps = min_steps
        self.batch_size = batch_size
        self._rng = random.Random(seed)
        self._samples: dict[str, _Sample] = {}
        self._order: list[str] = []  # saved keys, oldest first
        self._sizes: dict[str, tuple[int, int]] = {}  # image size per predicted key
        self._rollback: list[dict[str, Tensor]] = []
        self.backbone_id = backbone_id or uuid.uuid4().hex
        self._optimizer: torch.optim.Optimizer | None = None

    # -- the model ------------------------------------------------------------------
    @property
    def model(self) -> FCN:
        return self.predictor.model

    def _head_params(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if is_head_parameter(n) and p.requires_grad]

    def set_backbone(self, predictor: Predictor, backbone_id: str | None = None) -> None:
        """Continue on a new model (after a full fine-tune): its head, fresh features."""
        self.predictor = predictor
        self.backbone_id = backbone_id or uuid.uuid4().hex
        self.cache.clear()
        self._optimizer = None
        self._rollback.clear()
        for s in self._samples.values():
            s.target = None

    # -- prediction -------------------------------------------------------------------
    def predict(self, key: str, image: np.ndarray, *, uncertainty: str | None = "entropy") -> Prediction:
        """Predict ``image`` with the current head and keep its features under ``key``."""
        pred, feats = self.predictor.predict_with_features(image, self.backbone_id,
                                                           uncertainty=uncertainty)
        self.cache.put(key, feats)
        self._sizes[key] = (image.shape[0], image.shape[1])
        return pred

    def refresh(self, key: str, size: tuple[int, int] | None = None, *,
                uncertainty: str | None = "entropy") -> Prediction | None:
        """The current head's prediction from cached features (at ``size``, by default
        the size of the image :meth:`predict` saw); None when not cached."""
        feats = self.cache.get(key, self.backbone_id)
        size = size or self._sizes.get(key)
        if feats is None or size is None:
            return None
        return self.predictor.predict_from_features(feats, size, uncertainty=uncertainty)

    def has_features(self, key: str) -> bool:
        return self.cache.get(key, self.backbone_id) is not None

    # -- labels -----------------------------------------------------------------------
    def add_label(self, key: str, label: np.ndarray, image: np.ndarray | None = None, *,
                  oldest: bool = False) -> None:
        """Record ``key``'s saved label (``H x W`` uint8, 255 = void) as training data.

        With ``image`` the features are computed now when not cached (a backbone
        forward); without, :meth:`learn` uses them once :meth:`predict` has run.
        ``oldest`` files it before every other label (one saved before them: it
        never counts among the newest, and is the last to get its features back).
        """
        if label.ndim != 2 or label.dtype != np.uint8:
            raise ValueError(f"{key}: a label must be H x W uint8, not {label.shape} {label.dtype}")
        n = self.predictor.num_classes
        bad = label[(label >= n) & (label != VOID)]
        if bad.size:
            raise ValueError(f"{key}: class id {int(bad.max())} in the label, but the model has {n} "
                             "classes")
        if image is not None:
            if image.shape[:2] != label.shape:
                raise ValueError(f"{key}: label {label.shape} and image {image.shape[:2]} differ in size")
            if not self.has_features(key):
                self.predict(key, image, uncertainty=None)
        self._samples[key] = _Sample(np.ascontiguousarray(label))
        if key in self._order:
            self._order.remove(key)
        if oldest:
            self._order.insert(0, key)
        else:
            self._order.append(key)

    def remove_label(self, key: str) -> None:
        self._samples.pop(key, None)
        if key in self._order:
            self._order.remove(key)

    @property
    def labelled(self) -> list[str]:
        return list(self._order)

    def _target(self, key: str, feats: ImageFeatures) -> Tensor:
        s = self._samples[key]
        label = s.label
        if label.shape != feats.size:  # features of a downscaled copy: scale the label too
            label = np.asarray(Image.fromarray(label).resize((feats.size[1], feats.size[0]),
                                                             Image.Resampling.NEAREST))
        if s.target is None or (self._exact and s.target.shape != label.shape):
            if self._exact:
                s.target = torch.from_numpy(label.astype(np.int64))
            else:
                stride = self.model.coarse_stride
                g = self._grid(feats)
                s.target = coarse_target(label, self.predictor.num_classes, stride, g)
        return s.target

    @property
    def _exact(self) -> bool:
        """The reference alignment's crops do not line up with blocks: full-size loss."""
        return self.model.config.alignment != "same"

    def _grid(self, feats: ImageFeatures) -> tuple[int, int]:
        h, w = feats.size
        s = self.model.coarse_stride
        return -(-h // 32) * 32 // s, -(-w // 32) * 32 // s

    # -- learning -----------------------------------------------------------------------
    def learn(self, reload: Callable[[str], np.ndarray] | None = None,
              time_budget: float | None = None, max_reload: int | None = None) -> LearnReport:
        """Train the head on every saved image's features, within the time budget.

        ``reload(key)`` returns an image whose features are no longer cached (they
        are recomputed, which costs a backbone forward each, newest first and at
        most ``max_reload`` of them); images left without features are skipped
        this time and named in the report.
        """
        t0 = time.perf_counter()
        budget = self.time_budget if time_budget is None else time_budget
        usable: list[tuple[str, ImageFeatures]] = []
        skipped: list[str] = []
        reloads = 0
        for key in reversed(self._order):  # the newest first: they matter most
            feats = self.cache.get(key, self.backbone_id)
            if feats is None and reload is not None and (max_reload is None or reloads < max_reload):
                self.predict(key, reload(key), uncertainty=None)
                reloads += 1
                feats = self.cache.get(key, self.backbone_id)
            if feats is None:
                skipped.append(key)
            else:
                usable.append((key, feats))
        usable.reverse()
        params = self._head_params()
        if not usable or not params:
            return LearnReport(0, 0, 0.0, time.perf_counter() - t0, None, None, tuple(skipped))
        self._rollback.append(head_state(self.model))
        del self._rollback[:-MAX_ROLLBACK]
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(params, lr=self.lr)
        device = self.predictor.device
        newest = usable[-1]
        model = self.model.eval()  # dropout sits in the backbone: off; BN stays frozen
        steps = visits = 0
        pass_losses: list[float] = []
        deadline = t0 + budget
        sizes: dict[tuple[int, int], int] = {}
        for _, feats in usable:
            sizes[feats.size] = sizes.get(feats.size, 0) + 1
        for _, feats in self._twice(usable):
            sizes[feats.size] += 1
        n_batches = sum(-(-n // self.batch_size) for n in sizes.values())  # as _chunks makes them
        try:
            passes = max(self.max_passes, -(-self.min_steps // n_batches))
            for _ in range(passes):
                total, weight = 0.0, 0
                # Batches are stacked as they are used (fp16 storage -> fp32 compute), so
                # the budget goes to learning, not to copying features that are not reached.
                for chunk in self._chunks(usable, newest):
                    keys = [k for k, _ in chunk]
                    taps = {t: _as_input(torch.cat([f.taps[t] for _, f in chunk]), device)
                            for t in chunk[0][1].taps}
                    target = torch.stack([self._target(k, f) for k, f in chunk]).to(device)
                    with torch.enable_grad():
                        loss = self._loss(model, taps, target, keys)
                        self._optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                    self._optimizer.step()
                    steps += 1
                    visits += len(keys)
                    total += float(loss.detach()) * len(keys)
                    weight += len(keys)
                    if time.perf_counter() >= deadline:
                        break
                pass_losses.append(total / max(weight, 1))
                if time.perf_counter() >= deadline:
                    break
        finally:
            for q in params:
                q.grad = None
        return LearnReport(len(usable), steps, visits / len(usable), time.perf_counter() - t0,
                           pass_losses[0], pass_losses[-1], tuple(skipped))

    def _chunks(self, usable: list[tuple[str, ImageFeatures]], newest: tuple[str, ImageFeatures]
                ) -> list[list[tuple[str, ImageFeatures]]]:
        """One pass in batches of up to ``batch_size`` images of equal feature size, in a
        new random order, the newest ``recent`` images twice; the newest image leads the
        first batch, so however short the budget, it is learned from."""
        rest = [item for item in usable if item[0] != newest[0]] + self._twice(usable)
        self._rng.shuffle(rest)
        groups: dict[tuple[int, int], list[tuple[str, ImageFeatures]]] = {}
        for item in [newest, *rest]:  # the newest image's size group comes first
            groups.setdefault(item[1].size, []).append(item)
        chunks = [items[i : i + self.batch_size] for items in groups.values()
                  for i in range(0, len(items), self.batch_size)]
        first, others = chunks[0], chunks[1:]
        self._rng.shuffle(others)
        return [first, *others]

    def _twice(self, usable: list[tuple[str, ImageFeatures]]) -> list[tuple[str, ImageFeatures]]:
        """The images a pass visits a second time: the newest ``recent`` (``usable`` is
        oldest first), none while every image is that new (twice each would change nothing)."""
        return usable[-self.recent:] if 0 < self.recent < len(usable) else []

    def _loss(self, model: FCN, taps: dict[str, Tensor], target: Tensor, keys: list[str]) -> Tensor:
        if self._exact:
            logits = model.head(taps, target.shape[-2], target.shape[-1])
            n = (target != VOID).sum().clamp_min(1)
            return F.cross_entropy(logits, target, ignore_index=VOID, reduction="sum") / n
        return soft_cross_entropy(model.coarse_scores(taps), target)

    # -- versions -----------------------------------------------------------------------
    def can_roll_back(self) -> bool:
        return bool(self._rollback)

    def roll_back(self) -> None:
        """Undo the last :meth:`learn`: the head as it was before it."""
        if not self._rollback:
            raise ValueError("nothing to roll back: the head has not learned since it was loaded")
        load_head_state(self.model, self._rollback.pop())
        self._optimizer = None  # its moments belong to the undone steps


# -- head files: what instant learning taught, kept across restarts --------------------------

HEAD_FORMAT = "fcn-studio-head"


def backbone_fingerprint(model: FCN) -> str:
    """A short digest of the first and last backbone layers' parameters: a head is
    only ever put back on the backbone it learned on.

    For VGG16 that is conv1_1 and fc7 (weight, then bias), as it always was, so the
    head files written before there were other backbones still fit.
    """
    import hashlib

    layers: dict[str, list[torch.nn.Parameter]] = {}  # module -> its parameters, in model order
    for name, param in model.named_parameters():
        if not is_head_parameter(name):
            layers.setdefault(name.rpartition(".")[0], []).append(param)
    names = list(layers)
    h = hashlib.sha256()
    for layer in dict.fromkeys((names[0], names[-1])):
        for param in layers[layer]:
            h.update(param.detach().to("cpu", torch.float32).numpy().tobytes()[:1 << 20])
    return h.hexdigest()[:16]


def save_head_file(path: str | Path, model: FCN, *, parent: str, class_names: list[str],
                   images: list[str], tag: str) -> None:
    """Write the learned head (kilobytes), its parent model's id and the images it
    learned from, atomically: a crash never leaves a half-written head."""
    from .atomic import atomic_save

    record = {"format": HEAD_FORMAT, "format_version": 1, "parent": parent, "tag": tag,
              "class_names": list(class_names), "images": list(images),
              "backbone": backbone_fingerprint(model), "head": head_state(model)}
    atomic_save(path, lambda f: torch.save(record, f))


def read_head_file(path: str | Path, model: FCN, *, parent: str,
                   class_names: list[str]) -> dict | None:
    """The head file's record when it fits ``model`` (same parent, classes and backbone),
    else None; an unreadable file raises ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: unreadable head file ({type(exc).__name__}: {exc})") from None
    if not isinstance(rec, dict) or rec.get("format") != HEAD_FORMAT:
        raise ValueError(f"{path}: not an FCN Studio head file")
    if (rec.get("parent") != parent or list(rec.get("class_names", [])) != list(class_names)
            or rec.get("backbone") != backbone_fingerprint(model)):
        return None  # learned on another model: not for this one
    return rec
