"""Error-Recycling Fine-Tuning (ERFT (SVI), CF Sec. 5) for the context teacher.

The teacher's own prediction errors are banked, keyed by timestep, and injected back into its inputs (context
latents, target latents, noise) so that it learns to correct drifted context. The regression target stays the
clean one: callers build x_t from the *corrupted* x0 and noise, and regress to the flow eps' - x0_clean, where eps'
is the (possibly corrupted) noise and x0_clean the uncorrupted target.

Typical step::

    inj = inject(context, x0, eps, t, bank, cfg, generator)
    x_t = add_noise(inj.target, inj.noise, sigma)            # corrupted inputs
    v = inj.noise - x0                                       # clean regression target
    v_hat = teacher(inj.context, x_t, t)
    loss = mse(v_hat, v)
    if should_update_bank(inj.clean, generator, cfg).any():  # per sample
        e_x0, e_noise = errors_from_prediction(v_hat.detach(), v, sigma)
        bank.add(*frames_of(e_x0, t), kind="x0"); bank.add(*frames_of(e_noise, t), kind="noise")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..diffusion.schedule import NUM_TRAIN_TIMESTEPS, per_frame, shift_sigma

ErrorKind = Literal["x0", "noise"]
KINDS: tuple[ErrorKind, ...] = ("x0", "noise")


@dataclass(kw_only=True, slots=True)
class ErftConfig:
    """Error banks and injection probabilities of ERFT (SVI defaults, film setting)."""

    num_buckets: int = 50
    """Timestep buckets: the nearest of ``num_buckets`` shift-``shift`` inference timesteps keys an error."""
    capacity: int = 500
    """Maximum stored errors per bucket (and per kind); when full, a new error replaces the most similar one."""
    p_context: float = 0.9
    """Probability (per non-clean sample) of adding x0 errors to ``context_run`` consecutive context latents."""
    p_target: float = 0.9
    """Probability (per non-clean sample) of adding an x0 error to every target latent frame."""
    p_noise: float = 0.01
    """Probability (per non-clean sample) of adding a noise error to every noise frame."""
    clean_prob: float = 0.5
    """Probability that a sample gets no injection at all (SVI: 0.5 film, 0.2 shot)."""
    update_prob_after_clean: float = 0.1
    """Probability of banking a clean sample's errors (an injected sample's errors are always banked)."""
    warmup_entries: int = 1
    """Minimum entries in a bucket before it is sampled; a colder bucket injects nothing."""
    shift: float = 5.0
    """Timestep shift of the bucket table."""
    context_run: int = 3
    """Consecutive context latents that receive x0 errors."""

    def __post_init__(self) -> None:
        for name in ("num_buckets", "capacity", "warmup_entries", "context_run"):
            if getattr(self, name) < 1:
                raise ValueError(f"ErftConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("p_context", "p_target", "p_noise", "clean_prob", "update_prob_after_clean"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ErftConfig.{name} is a probability and must lie in [0, 1], got {getattr(self, name)}")
        if self.warmup_entries > self.capacity:
            raise ValueError(f"warmup_entries ({self.warmup_entries}) cannot exceed capacity ({self.capacity})")
        if self.shift <= 0:
            raise ValueError(f"ErftConfig.shift must be positive, got {self.shift}")


def bucket_timesteps(num_buckets: int, shift: float) -> Tensor:
    """Bucket table t_i = 1000 * shift(1 - i / num_buckets), i = 0 .. num_buckets - 1 (decreasing, t_0 = 1000).

    Returns:
        (num_buckets,) float64.

    """
    sigma = 1.0 - torch.arange(num_buckets, dtype=torch.float64) / num_buckets
    return NUM_TRAIN_TIMESTEPS * shift_sigma(sigma, shift)


class ErrorBank:
    """Timestep-keyed stores of single-frame errors (C, H, W), one store per kind ("x0", "noise"). ERFT (SVI)."""

    def __init__(self, cfg: ErftConfig, device: torch.device | str = "cpu") -> None:
        """Create empty banks.

        Args:
            cfg: bucket count, capacity and warm-up.
            device: where errors are stored (and sampled to).

        """
        self.cfg = cfg
        self.device = torch.device(device)
        self.timesteps = bucket_timesteps(cfg.num_buckets, cfg.shift)
        self._store: dict[str, list[Tensor | None]] = {k: [None] * cfg.num_buckets for k in KINDS}

    def bucket_of(self, t: float | Tensor) -> int | Tensor:
        """Index of the nearest table timestep; an int for a scalar, a (N,) long tensor for a (N,) tensor."""
        tt = torch.as_tensor(t, dtype=torch.float64).cpu()
        idx = (tt.reshape(-1, 1) - self.timesteps.reshape(1, -1)).abs().argmin(dim=1)
        return int(idx[0]) if tt.ndim == 0 else idx

    def count(self, bucket: int, kind: ErrorKind = "x0") -> int:
        """Entries stored in one bucket."""
        store = self._bucket_list(kind)[bucket]
        return 0 if store is None else store.shape[0]

    def counts(self, kind: ErrorKind = "x0") -> list[int]:
        """Entries per bucket."""
        return [self.count(i, kind) for i in range(self.cfg.num_buckets)]

    def __len__(self) -> int:
        """Total entries over all buckets and both kinds."""
        return sum(sum(self.counts(k)) for k in KINDS)

    def _bucket_list(self, kind: str) -> list[Tensor | None]:
        if kind not in self._store:
            raise ValueError(f"error kind must be one of {KINDS}, got {kind!r}")
        return self._store[kind]

    def add(self, errors: Tensor, t: float | Tensor, kind: ErrorKind = "x0") -> None:
        """Bank errors; a full bucket replaces its most similar entry (smallest L2 distance), as SVI's ``l2_batch``.

        Args:
            errors: (N, C, H, W), one latent frame each (see :func:`frames_of`).
            t: scalar timestep shared by all, or (N,) timesteps in [0, 1000].
            kind: "x0" or "noise" (separate banks).

        """
        stores = self._bucket_list(kind)
        if errors.ndim != 4:
            raise ValueError(f"errors must be (N, C, H, W), got shape {tuple(errors.shape)}")
        n = errors.shape[0]
        tt = torch.as_tensor(t, dtype=torch.float64).cpu()
        if tt.ndim == 0:
            tt = tt.expand(n)
        if tt.shape != (n,):
            raise ValueError(f"t must be a scalar or (N,) = ({n},), got shape {tuple(tt.shape)}")
        buckets = self.bucket_of(tt)
        errors = errors.detach().to(self.device, torch.float32)
        for i in range(n):
            b = int(buckets[i])
            e = errors[i : i + 1]
            store = stores[b]
            if store is None:
                stores[b] = e.clone()
            elif store.shape[1:] != e.shape[1:]:
                raise ValueError(f"error shape {tuple(e.shape[1:])} differs from the bank's {tuple(store.shape[1:])}")
            elif store.shape[0] < self.cfg.capacity:
                stores[b] = torch.cat([store, e])
            else:
                nearest = int((store - e).flatten(1).pow(2).sum(1).argmin())
                store[nearest] = e[0]

    def sample(self, t: float | Tensor, n: int, generator: torch.Generator, kind: ErrorKind = "x0") -> Tensor | None:
        """Draw n errors (uniformly, with replacement) from the bucket of t.

        Returns:
            (n, C, H, W) on the bank's device, or None if the bucket holds fewer than ``warmup_entries``.

        """
        return self.sample_bucket(int(self.bucket_of(float(t))), n, generator, kind)

    def sample_bucket(self, bucket: int, n: int, generator: torch.Generator, kind: ErrorKind = "x0") -> Tensor | None:
        """Draw n errors from one bucket by index; None if it is not warm."""
        store = self._bucket_list(kind)[bucket]
        if store is None or store.shape[0] < self.cfg.warmup_entries:
            return None
        idx = torch.randint(store.shape[0], (n,), generator=generator, device=generator.device)
        return store[idx.to(store.device)]

    def warm_buckets(self, kind: ErrorKind = "x0") -> list[int]:
        """Buckets that hold at least ``warmup_entries`` entries."""
        return [i for i, c in enumerate(self.counts(kind)) if c >= self.cfg.warmup_entries]

    def state_dict(self) -> dict[str, object]:
        """Serializable contents (tensors on CPU) for resuming training."""
        return {
            "num_buckets": self.cfg.num_buckets,
            "shift": self.cfg.shift,
            **{k: [None if s is None else s.cpu().clone() for s in self._store[k]] for k in KINDS},
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict` output; the bucket table must match, entries beyond capacity are dropped."""
        if state["num_buckets"] != self.cfg.num_buckets or state["shift"] != self.cfg.shift:
            raise ValueError(
                f"bank state has {state['num_buckets']} buckets at shift {state['shift']}, "
                f"config has {self.cfg.num_buckets} at shift {self.cfg.shift}"
            )
        for k in KINDS:
            self._store[k] = [
                None if s is None else s[: self.cfg.capacity].to(self.device, torch.float32).clone()
                for s in state[k]  # type: ignore[union-attr]
            ]


def errors_from_prediction(v_hat: Tensor, v: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
    """Errors to bank after a step (docs/baselines.md section 10).

    With x_t = (1 - sigma) x0 + sigma eps and v = eps - x0, the model's estimates are x0_hat = x_t - sigma v_hat =
    x0 + x0_error and eps_hat = x_t + (1 - sigma) v_hat = eps + noise_error.

    Args:
        v_hat: (B, C, F, H, W) predicted flow.
        v: (B, C, F, H, W) regression target.
        sigma: scalar, (B,) or (B, F) noise level of x_t.

    Returns:
        x0_error = -sigma (v_hat - v) and noise_error = (1 - sigma)(v_hat - v), both (B, C, F, H, W), detached.

    """
    d = (v_hat - v).detach()
    s = per_frame(sigma, d)
    return -s * d, (1 - s) * d


def frames_of(errors: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Split (B, C, F, H, W) errors and (B,) timesteps into per-frame (B*F, C, H, W) errors and (B*F,) timesteps."""
    b, c, f, h, w = errors.shape
    return errors.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w), t.reshape(b).repeat_interleave(f)


@dataclass(kw_only=True, slots=True)
class Injection:
    """Corrupted inputs of one ERFT step; the inputs passed to :func:`inject` are left untouched."""

    context: Tensor | None
    """(B, C, Fc, H, W) context with x0 errors on ``context_run`` latents where ``context_injected``."""
    target: Tensor
    """(B, C, Ft, H, W) target x0 with per-frame x0 errors where ``target_injected``; build x_t from it."""
    noise: Tensor
    """(B, C, Ft, H, W) noise with per-frame noise errors where ``noise_injected``; the flow target is noise - x0_clean."""
    clean: Tensor
    """(B,) bool: the sample drew the clean branch (nothing injected by choice)."""
    context_injected: Tensor
    """(B,) bool."""
    target_injected: Tensor
    """(B,) bool."""
    noise_injected: Tensor
    """(B,) bool."""
    context_start: Tensor
    """(B,) long: first corrupted context latent, -1 where none."""


def inject(
    context: Tensor | None,
    target: Tensor,
    noise: Tensor,
    t: Tensor,
    bank: ErrorBank,
    cfg: ErftConfig,
    generator: torch.Generator,
) -> Injection:
    """Add banked errors to the teacher's inputs (ERFT (SVI), CF Sec. 5), independently per sample.

    With probability ``clean_prob`` a sample gets nothing; otherwise, independently: its context gets x0 errors on
    ``context_run`` consecutive latents at a random start, drawn from a random warm bucket (p_context; SVI draws
    context errors from any bucket); every target frame gets an x0 error from the bucket of t (p_target); every noise
    frame gets a noise error from the bucket of t (p_noise). A draw from a cold bucket injects nothing (flag False).

    Args:
        context: (B, C, Fc, H, W) clean context latents, or None.
        target: (B, C, Ft, H, W) clean target latents x0.
        noise: (B, C, Ft, H, W) Gaussian noise eps.
        t: (B,) timesteps in [0, 1000].
        bank: error banks.
        cfg: probabilities.
        generator: CPU generator of every draw.

    Returns:
        New tensors and per-sample flags; the caller regresses to the clean flow (``Injection.noise`` - clean x0).

    """
    b, _, ft = target.shape[:3]
    if noise.shape != target.shape:
        raise ValueError(f"noise {tuple(noise.shape)} and target {tuple(target.shape)} must have the same shape")
    if t.shape != (b,):
        raise ValueError(f"t must be (B,) = ({b},), got {tuple(t.shape)}")
    if context is not None and (context.shape[:2] != target.shape[:2] or context.shape[3:] != target.shape[3:]):
        raise ValueError(f"context {tuple(context.shape)} does not match target {tuple(target.shape)} outside time")
    u = torch.rand(b, 4, generator=generator, device=generator.device).cpu()
    clean = u[:, 0] < cfg.clean_prob
    want_ctx = ~clean & (u[:, 1] < cfg.p_context)
    want_tgt = ~clean & (u[:, 2] < cfg.p_target)
    want_noise = ~clean & (u[:, 3] < cfg.p_noise)
    ctx_out = None if context is None else context.clone()
    tgt_out, noise_out = target.clone(), noise.clone()
    flags = {name: torch.zeros(b, dtype=torch.bool) for name in ("ctx", "tgt", "noise")}
    start = torch.full((b,), -1, dtype=torch.long)
    warm_ctx = bank.warm_buckets("x0")
    for i in range(b):
        ti = float(t[i])
        if want_ctx[i] and ctx_out is not None and ctx_out.shape[2] > 0 and warm_ctx:
            run = min(cfg.context_run, ctx_out.shape[2])
            pick = int(torch.randint(len(warm_ctx), (1,), generator=generator, device=generator.device))
            s = int(torch.randint(ctx_out.shape[2] - run + 1, (1,), generator=generator, device=generator.device))
            err = bank.sample_bucket(warm_ctx[pick], run, generator, "x0")
            if err is not None:
                ctx_out[i, :, s : s + run] += err.permute(1, 0, 2, 3).to(ctx_out)
                flags["ctx"][i], start[i] = True, s
        if want_tgt[i]:
            err = bank.sample(ti, ft, generator, "x0")
            if err is not None:
                tgt_out[i] += err.permute(1, 0, 2, 3).to(tgt_out)
                flags["tgt"][i] = True
        if want_noise[i]:
            err = bank.sample(ti, ft, generator, "noise")
            if err is not None:
                noise_out[i] += err.permute(1, 0, 2, 3).to(noise_out)
                flags["noise"][i] = True
    return Injection(
        context=ctx_out,
        target=tgt_out,
        noise=noise_out,
        clean=clean,
        context_injected=flags["ctx"],
        target_injected=flags["tgt"],
        noise_injected=flags["noise"],
        context_start=start,
    )


def should_update_bank(was_clean: bool | Tensor, generator: torch.Generator, cfg: ErftConfig) -> bool | Tensor:
    """Whether to bank a step's errors: always after an injected step, with ``update_prob_after_clean`` after a clean one.

    Args:
        was_clean: a bool for the whole step, or (B,) bool per sample (``Injection.clean``).
        generator: CPU generator (one draw per element, also for injected ones, so the stream does not depend on it).
        cfg: ``update_prob_after_clean``.

    Returns:
        A bool, or a (B,) bool mask of samples whose errors to bank.

    """
    flags = torch.as_tensor(was_clean, dtype=torch.bool).cpu()
    u = torch.rand(flags.shape, generator=generator, device=generator.device).cpu()
    keep = ~flags | (u < cfg.update_prob_after_clean)
    return bool(keep) if flags.ndim == 0 else keep
