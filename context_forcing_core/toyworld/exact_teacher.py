"""Exact teachers of the scene world: the closed-form denoiser E[x0 | x_t, prompt, clean context].

The scene world (``scenes.py``) is a finite library, so its flow-matching denoiser needs no training. For one video
sample, a hypothesis h is "the prompt's scene is library picture h" (the conditional teacher ranges over the prompt's
K pictures, the unconditional one over every picture of every prompt). All noisy target frames of a window show the
same picture (the view holds still in a visit), so with x_t = (1 - sigma) x0 + sigma eps (docs/wan21.md section 8):

    log w_h = sum_f -||x_f - (1 - sigma_f) mu_h||^2 / (2 sigma_f^2) + sum_c log p(c | h) + const,
    x0_hat = sum_h softmax(log w)_h mu_h,         flow = (x_t - x0_hat) / sigma.

A clean context frame c (timestep 0) is a noisy observation of the video with noise ``context_sigma``: under h it
shows either picture h itself or a picture of another prompt (another scene of the video), never another picture
of h's prompt (a prompt shows one picture per video):

    p(c | h) = mean_{a in A_h} N(c; mu_a, context_sigma^2 I),   A_h = {h} + {pictures of the other prompts}.

So a context that shows one of the prompt's pictures selects it (even a drifted one, at the stated noise level),
scenes of other prompts are neutral, and without such a frame the prior over the K pictures stays uniform. Without
context this is the paper's short teacher (the window only); with the student's memory as context it is the long
context teacher. ``use_context=False`` makes a short teacher that ignores a given context.

The teacher is a drop-in for a bidirectional :class:`~context_forcing_core.models.wan.WanModel`: called as
``teacher(latents, timesteps, text, attention="bidirectional")`` it returns the flow, frames at timestep 0 being the
context (what :func:`~context_forcing_core.objectives.dmd.score_with_context` passes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..diffusion.schedule import NUM_TRAIN_TIMESTEPS, shift_sigma
from .scenes import LIBRARY_SIZE, ScenePrompt, all_scene_prompts, library_latents
from .text import ToyTextEncoder

CONTEXT_SIGMA = 0.5
"""Noise level (latent units, per element) at which context frames are trusted: a student frame this far from a
library picture still counts as showing it (library pictures of one prompt lie ~2-4 units apart per element where
they differ)."""
TEXT_MATCH_TOLERANCE = 1e-3
"""Largest |difference| between a text embedding and a prompt's for the two to count as the same prompt."""


PRUNE_COLUMNS = 64
"""Embedding columns :meth:`ExactTeacher.prompt_index` compares first: a prompt that differs from a text by more than
the tolerance there is ruled out before the whole embedding is compared (the answer is the same)."""


def _version(t: Tensor) -> int | None:
    """In-place modification counter of ``t``; None for an inference tensor (it keeps none: nothing is memoised)."""
    return None if t.is_inference() else t._version


def _sq_dist(x: Tensor, mu: Tensor, scale: Tensor, mu_sq: Tensor | None = None) -> Tensor:
    """(B, F, N) ||x_bf - scale_bf mu_n||^2 for x (B, F, D), mu (N, D), scale (B, F, 1), via one matmul; ``mu_sq``
    is (mu**2).sum(-1) when already computed.
    """
    cross = x @ mu.T  # (B, F, N)
    if mu_sq is None:
        mu_sq = (mu**2).sum(-1)
    return ((x**2).sum(-1, keepdim=True) - 2 * scale * cross + scale**2 * mu_sq).clamp_min(0)


class ExactTeacher(nn.Module):
    """The scene world's closed-form teacher (see the module docstring).

    Args:
        prompts: the world's prompts (default every scene prompt); their pictures form the library.
        encoder: the text encoder whose embeddings identify the prompts (default the toy encoder).
        context_sigma: noise level of context frames.
        use_context: False ignores context frames (the short teacher).
        library_size: K pictures per prompt.

    """

    def __init__(self, prompts: Sequence[ScenePrompt] | None = None, *, encoder: ToyTextEncoder | None = None,
                 context_sigma: float = CONTEXT_SIGMA, use_context: bool = True,
                 library_size: int = LIBRARY_SIZE) -> None:
        super().__init__()
        if not (math.isfinite(context_sigma) and context_sigma > 0):
            raise ValueError(f"context_sigma must be a positive number, got {context_sigma}")
        self.prompts = list(prompts) if prompts is not None else all_scene_prompts()
        self.encoder = encoder or ToyTextEncoder()
        self.context_sigma, self.use_context, self.library_size = context_sigma, use_context, library_size
        pics = torch.cat([library_latents(p, library_size) for p in self.prompts])  # (P*K, 48, 8, 8)
        if pics.shape[0] != len(self.prompts) * library_size:
            raise ValueError(f"expected {library_size} pictures per prompt, got {pics.shape[0]} for {len(self.prompts)}")
        self.register_buffer("pictures", pics, persistent=False)
        owner = torch.arange(len(self.prompts)).repeat_interleave(library_size)  # (P*K,) prompt of each picture
        self.register_buffer("owner", owner, persistent=False)
        allowed = (owner[:, None] != owner[None, :]) | torch.eye(len(owner), dtype=torch.bool)  # (h, a): a in A_h
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("embeddings", self.encoder.encode([p.text for p in self.prompts]), persistent=False)
        self._library_cache: dict = {}
        self._context_memo: tuple | None = None

    def _library(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """The flattened float64 pictures mu (N, D) on ``device`` and their squared norms (N,), computed once per
        device (again if the pictures are replaced or changed in place).
        """
        pics = self.pictures
        key = (torch.device(device), pics.device, pics.data_ptr(), _version(pics), pics.dtype)
        if key not in self._library_cache:
            mu = pics.flatten(1).double().to(device)
            if key[3] is None:
                return mu, (mu**2).sum(-1)
            self._library_cache = {key: (mu, (mu**2).sum(-1))}
        return self._library_cache[key]

    @property
    def num_pictures(self) -> int:
        """Pictures in the library (prompts x K)."""
        return self.pictures.shape[0]

    @property
    def device(self) -> torch.device:
        """Where the library lives."""
        return self.pictures.device

    def prompt_index(self, text: Tensor) -> Tensor:
        """(B,) int64 index into ``prompts`` of each text embedding (B, L, D); -1 for anything else (e.g. the empty
        negative prompt), which the teacher treats as unconditional.
        """
        emb = self.embeddings.to(text.device, text.dtype)  # (P, L, D)
        if text.shape[1:] != emb.shape[1:]:
            raise ValueError(f"text states {tuple(text.shape)} do not match the encoder's {tuple(emb.shape[1:])}")
        # The largest |difference| over a few columns bounds the whole one from below: a prompt beyond the tolerance
        # there cannot match, and the whole embedding is compared only for the (B, P) pairs left.
        near = (text[:, None, :, :PRUNE_COLUMNS] - emb[None, :, :, :PRUNE_COLUMNS]).abs().flatten(2).amax(dim=2)
        rows, cols = torch.nonzero(near <= TEXT_MATCH_TOLERANCE, as_tuple=True)
        diff = torch.full_like(near, math.inf)  # (B, P); pruned pairs stay beyond the tolerance
        diff[rows, cols] = (text[rows] - emb[cols]).abs().flatten(1).amax(dim=1)
        best, idx = diff.min(dim=1)
        return torch.where(best <= TEXT_MATCH_TOLERANCE, idx, torch.full_like(idx, -1))

    def posterior(self, x_t: Tensor, sigma: Tensor, text: Tensor, context: Tensor | None = None, *,
                  context_logp: Tensor | None = None) -> Tensor:
        """(B, P*K) float64 posterior weights over the library, summing to 1 (0 outside the prompt's pictures):
        the softmax of :meth:`log_weights` (same arguments).
        """
        return torch.softmax(self.log_weights(x_t, sigma, text, context, context_logp=context_logp), dim=1)

    def log_weights(self, x_t: Tensor, sigma: Tensor, text: Tensor, context: Tensor | None = None, *,
                    context_logp: Tensor | None = None) -> Tensor:
        """Unnormalised log posterior weights over the library.

        Args:
            x_t: (B, C, F, H, W) noisy target frames (F >= 1).
            sigma: (B, F) noise level of each target frame, in (0, 1].
            text: (B, L, D) prompt states (an unknown text is unconditional: every picture of every prompt), or
                their (B,) :meth:`prompt_index`.
            context: (B, C, Fc, H, W) clean context frames, or None.
            context_logp: :meth:`context_logp` of the context, computed once (instead of ``context``).

        Returns:
            (B, P*K) float64 log w_h up to a per-sample constant (-inf outside the prompt's pictures).

        """
        b, f = x_t.shape[0], x_t.shape[2]
        if sigma.shape != (b, f) or bool((sigma <= 0).any()) or bool((sigma > 1).any()):
            raise ValueError(f"sigma must be (B, F) = {(b, f)} in (0, 1], got {tuple(sigma.shape)}")
        mu, mu_sq = self._library(x_t.device)  # (N, D), (N,)
        x = x_t.double().transpose(1, 2).flatten(2)  # (B, F, D)
        s = sigma.double().to(x.device)  # (B, F)
        a = (1 - s)[:, :, None]  # (B, F, 1)
        if context_logp is None and context is not None:
            context_logp = self.context_logp(context)
        idx = text.to(x.device) if text.ndim == 1 else self.prompt_index(text.to(x_t.device))  # (B,)
        if bool((idx >= 0).all()):  # every sample names a prompt: only its K pictures can have weight
            return self._prompt_log_weights(x, s, a, idx, context_logp)
        d = _sq_dist(x, mu, a, mu_sq)  # (B, F, N) ||x_f - (1 - sigma_f) mu_n||^2
        logw = (-d / (2 * s[:, :, None] ** 2)).sum(1)  # (B, N)
        if context_logp is not None:
            logw = logw + context_logp.to(x.device)
        owner = self.owner.to(x.device)
        keep = (idx[:, None] < 0) | (owner[None] == idx[:, None])  # (B, N)
        return torch.where(keep, logw, torch.tensor(-math.inf, dtype=logw.dtype, device=logw.device))

    def _prompt_log_weights(self, x: Tensor, s: Tensor, a: Tensor, idx: Tensor, context_logp: Tensor | None
                            ) -> Tensor:
        """:meth:`log_weights` where every sample's prompt is known (``idx`` >= 0): the distances to its prompt's K
        pictures only (the pictures of prompt p are rows p * K .. p * K + K - 1), -inf elsewhere.
        """
        mu, mu_sq = self._library(x.device)
        k = self.library_size
        cols = idx[:, None] * k + torch.arange(k, device=x.device)  # (B, K)
        own = mu[cols]  # (B, K, D)
        cross = torch.bmm(x, own.transpose(1, 2))  # (B, F, K)
        d = ((x**2).sum(-1, keepdim=True) - 2 * a * cross + a**2 * mu_sq[cols][:, None, :]).clamp_min(0)
        logw = (-d / (2 * s[:, :, None] ** 2)).sum(1)  # (B, K)
        if context_logp is not None:
            logw = logw + context_logp.to(x.device).gather(1, cols)
        out = torch.full((x.shape[0], self.num_pictures), -math.inf, dtype=logw.dtype, device=x.device)
        return out.scatter_(1, cols, logw)

    def context_logp(self, context: Tensor) -> Tensor:
        """(B, N) float64 sum over context frames of log p(c | h) (up to a constant); zeros when the teacher ignores
        context or there is none. Independent of the noisy target, so a sampler computes it once per window; the
        last context's answer is kept, so asking again for the same, unchanged tensor (the reader of a chunk after
        its sampler) costs nothing.
        """
        memo, version = self._context_memo, _version(context)
        if memo is not None and memo[0] is context and version is not None and memo[1] == version:
            return memo[2]
        out = self._context_logp(context)
        self._context_memo = None if version is None else (context, version, out)
        return out

    def _context_logp(self, context: Tensor) -> Tensor:
        b, n = context.shape[0], self.num_pictures
        if context.shape[2] == 0 or not self.use_context:
            return torch.zeros(b, n, dtype=torch.float64, device=context.device)
        mu, mu_sq = self._library(context.device)  # (N, D), (N,)
        c = context.double().transpose(1, 2).flatten(2)  # (B, Fc, D)
        ll = -_sq_dist(c, mu, torch.ones_like(c[:, :, :1]), mu_sq) / (2 * self.context_sigma**2)  # (B, Fc, N)
        # log sum over A_h = {h} + the other prompts' pictures, by prompt: each prompt's K pictures summed first,
        # then the other prompts' sums (P x P instead of N x N terms per frame).
        p, k = len(self.prompts), self.library_size
        own = torch.logsumexp(ll.unflatten(-1, (p, k)), dim=-1)  # (B, Fc, P)
        others = ~torch.eye(p, dtype=torch.bool, device=c.device)  # (P, P')
        minus_inf = torch.tensor(-math.inf, dtype=ll.dtype, device=ll.device)
        rest = torch.logsumexp(torch.where(others, own[:, :, None, :], minus_inf), dim=-1)  # (B, Fc, P)
        owner = self.owner.to(c.device)
        per_frame = torch.logaddexp(ll, rest[:, :, owner]) - math.log(1 + n - k)  # (B, Fc, N_h)
        return per_frame.sum(1)

    def x0(self, x_t: Tensor, sigma: Tensor, text: Tensor, context: Tensor | None = None, *,
           context_logp: Tensor | None = None) -> Tensor:
        """(B, C, F, H, W) E[x0 | x_t, prompt, context]: the posterior mean picture, the same for every frame."""
        w = self.posterior(x_t, sigma, text, context, context_logp=context_logp)  # (B, N)
        mean = (w @ self._library(w.device)[0]).to(x_t.dtype)  # (B, D)
        frame = mean.view(x_t.shape[0], x_t.shape[1], 1, *x_t.shape[3:])
        return frame.expand_as(x_t)

    def forward(self, latents: Tensor, timesteps: Tensor, text: Tensor, *, attention: object = "bidirectional"
                ) -> Tensor:
        """Flow of every frame, as a bidirectional WanModel returns it: frames at timestep 0 are the clean context,
        the others the noisy target (at least one).

        Args:
            latents: (B, C, F, H, W).
            timesteps: (B,) or (B, F) in [0, 1000].
            text: (B, L, D) text states (a ``TextContext`` is not accepted: the teacher reads the raw states).
            attention: must be "bidirectional" (the exact teacher sees the whole window).

        """
        if attention != "bidirectional":
            raise ValueError("the exact teacher is bidirectional; it has no causal or cached attention")
        if not isinstance(text, Tensor):
            raise ValueError("the exact teacher reads raw (B, L, D) text states")
        b, f = latents.shape[0], latents.shape[2]
        t = timesteps[:, None].expand(b, f) if timesteps.shape == (b,) else timesteps
        if t.shape != (b, f):
            raise ValueError(f"timesteps must be (B,) or (B, F) = {(b, f)}, got {tuple(timesteps.shape)}")
        t = t.to(latents.device).float()
        is_target = t[0] > 0  # (F,)
        if bool(((t > 0) != is_target[None]).any()) or not bool(is_target.any()):
            raise ValueError("every sample must have the same context frames (timestep 0) and at least one target")
        target, context = latents[:, :, is_target], latents[:, :, ~is_target]
        sigma = t[:, is_target] / NUM_TRAIN_TIMESTEPS  # (B, Ft)
        x0 = self.x0(target, sigma, text, context)
        flow = torch.zeros_like(latents)
        flow[:, :, is_target] = (target - x0) / sigma[:, None, :, None, None].to(latents.dtype)
        return flow


@torch.no_grad()
def reading(teacher: ExactTeacher, frames: Tensor, text: Tensor, context: Tensor | None = None) -> Tensor:
    """The teacher's reading of a student's finished chunk: E[picture | the chunk's frames, prompt, context], the
    frames taken as observations at the teacher's ``context_sigma`` (as context frames are). So a chunk near one of
    the prompt's pictures reads as that picture, and a context that shows one of them overrides the chunk.

    Args:
        frames: (B, C, F, H, W) the chunk, clean.
        text: (B, L, D) prompt states, or their (B,) :meth:`ExactTeacher.prompt_index`.
        context: (B, C, Fc, H, W) clean context frames, or None.

    Returns:
        (B, C, F, H, W) the posterior-mean picture, the same for every frame.

    """
    x_t, sigma = _as_observation(teacher, frames)
    return teacher.x0(x_t, sigma, text, context).to(frames.dtype)


def _as_observation(teacher: ExactTeacher, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Clean frames (B, C, F, H, W) as the noisy target x_t and its (B, F) sigma at which they are observations at
    the teacher's ``context_sigma``.
    """
    # An observation c = mu + context_sigma * eps is x_t / (1 - sigma) at sigma / (1 - sigma) = context_sigma.
    sigma = teacher.context_sigma / (1 + teacher.context_sigma)
    b, f = frames.shape[0], frames.shape[2]
    return (1 - sigma) * frames.float(), torch.full((b, f), sigma, device=frames.device)


MAX_BALANCED_GROUP = 8
"""Most chunks of one prompt that :func:`balanced_reading` assigns jointly (it searches every assignment)."""


@torch.no_grad()
def balanced_reading(teacher: ExactTeacher, frames: Tensor, text: Tensor, context: Tensor | None,
                     invent: Tensor) -> Tensor:
    """:func:`reading`, except for the chunks that must invent (``invent``, (B,) bool: their context shows nothing
    of their prompt, so the teacher's choice is uniform over the prompt's K pictures). The n inventing chunks of one
    prompt are read jointly: each gets one picture (not a posterior mean), each picture going to at most ceil(n / K)
    of them, under the assignment the teacher finds most likely (sum of the chunks' log weights). With n = K every
    picture goes to exactly one chunk: the optimal transport between the student's n samples and the teacher's K
    equally likely pictures, so the targets are as varied as the teacher while each sample goes to a picture near
    it where it can. The plain reading sends each sample to the picture it leans to, which keeps (and, trained on,
    deepens) whatever bias the student's inventions have.

    Args:
        frames: (B, C, F, H, W) the chunks, clean; ``text`` (B, L, D) their prompts; ``context`` as for
            :func:`reading`.
        invent: (B,) bool.

    Returns:
        (B, C, F, H, W) the targets.

    """
    out = reading(teacher, frames, text, context).clone()  # (B, C, F, H, W); reading() expands one frame
    x_t, sigma = _as_observation(teacher, frames)
    logw = teacher.log_weights(x_t, sigma, text).cpu()  # (B, N): the chunks alone (no context: nothing of the prompt)
    prompts = teacher.prompt_index(text.to(teacher.device)).cpu()  # (B,)
    for p in prompts[invent.cpu()].unique().tolist():
        rows = torch.nonzero(invent.cpu() & (prompts == p)).flatten()
        if p < 0:
            raise ValueError("balanced_reading needs prompts of the world's library, got an unknown text")
        if len(rows) > MAX_BALANCED_GROUP:
            raise ValueError(f"balanced_reading assigns at most {MAX_BALANCED_GROUP} chunks of one prompt jointly, "
                             f"got {len(rows)}")
        pics = torch.nonzero(teacher.owner.cpu() == p).flatten()  # (K,) the prompt's pictures
        slots = pics.repeat(math.ceil(len(rows) / len(pics)))  # each picture ceil(n / K) times
        ways = torch.tensor(list(itertools.permutations(range(len(slots)), len(rows))))  # (M, n) slot of each row
        score = logw[rows[None, :], slots[ways]].sum(1)  # (M,)
        chosen = slots[ways[int(score.argmax())]]  # (n,) picture of each row
        pictures = teacher.pictures[chosen.to(teacher.device)].to(out)  # (n, C, H, W)
        out[rows.to(out.device)] = pictures[:, :, None].expand(-1, -1, out.shape[2], -1, -1)
    return out


@torch.no_grad()
def coupled_sample(teacher: ExactTeacher, text: Tensor, *, noise: Tensor, context: Tensor | None = None) -> Tensor:
    """A draw from the teacher's distribution over end points, coupled to the chunk's noise by quantiles instead of by
    its probability flow.

    The exact teacher's flow ends on one of the prompt's pictures, drawn from its prior given the clean context
    (uniform over the K without a frame of the prompt in the context, the shown scene when there is one): the
    weights :meth:`ExactTeacher.log_weights` gives when the target carries no information. Which picture the flow
    picks depends on the noise through sums over the whole chunk that a small student learns slowly
    (``results/sampler-choice/``). Here the picture is the inverse CDF of those weights (pictures in library order)
    at u = Phi(sum of the chunk's noise / sqrt(its size)), which is uniform on (0, 1): the same distribution, and a
    map from noise to picture that needs one global sum.

    Args:
        text: (B, L, D) prompt states, or their (B,) :meth:`ExactTeacher.prompt_index`.
        noise: (B, C, F, H, W) the chunk's noise (the student's first input).
        context: (B, C, Fc, H, W) clean context frames, or None.

    Returns:
        (B, C, F, H, W) float32 the chosen picture in every frame.

    """
    b, f = noise.shape[0], noise.shape[2]
    logw = torch.zeros(b, teacher.num_pictures, dtype=torch.float64, device=teacher.device)
    if context is not None:
        logw = logw + teacher.context_logp(context.to(teacher.device))
    idx = text.to(teacher.device) if text.ndim == 1 else teacher.prompt_index(text.to(teacher.device))  # (B,)
    keep = (idx[:, None] < 0) | (teacher.owner.to(teacher.device)[None] == idx[:, None])  # (B, N)
    w = torch.softmax(torch.where(keep, logw, torch.tensor(-math.inf, dtype=logw.dtype, device=logw.device)), 1)
    u = torch.special.ndtr(noise.double().flatten(1).sum(1) / noise[0].numel() ** 0.5).to(teacher.device)  # (B,)
    pick = torch.searchsorted(w.cumsum(1), u[:, None], right=True).clamp(max=teacher.num_pictures - 1)[:, 0]  # (B,)
    return teacher.pictures[pick].float()[:, :, None].expand(-1, -1, f, -1, -1).to(noise.device)


@torch.no_grad()
def exact_sample(teacher: ExactTeacher, text: Tensor, *, num_frames: int, context: Tensor | None = None,
                 steps: int = 48, shift: float = 5.0, guidance: float = 0.0, uncond: Tensor | None = None,
                 generator: torch.Generator, noise: Tensor | None = None,
                 states: dict[float, Tensor] | None = None) -> Tensor:
    """Sample a window from the teacher with the probability-flow ODE (Euler, ``steps`` shifted steps from t = 1000).

    Args:
        text: (B, L, D) prompt states; ``uncond`` the negative prompt's (B, L, D) when ``guidance`` > 0
            (x0 = cond + guidance (cond - uncond), the DMD real score's convention).
        num_frames: target frames; ``context`` (B, C, Fc, 8, 8) clean frames before them, or None.
        noise: (B, C, num_frames, 8, 8) starting noise; drawn from ``generator`` when None.
        states: when given, receives the ODE state x (float32, like ``noise``) at every sigma of the grid it passes,
            keyed by that sigma (1.0 first).

    Returns:
        (B, C, num_frames, 8, 8) float32 x0 after the last step.

    """
    b = text.shape[0]
    shape = (b, teacher.pictures.shape[1], num_frames, *teacher.pictures.shape[2:])
    x = torch.randn(shape, generator=generator) if noise is None else noise.clone()
    x = x.to(teacher.device).float()
    sig = [float(shift_sigma(1 - i / steps, shift)) for i in range(steps)] + [0.0]
    logp = teacher.context_logp(context.to(x)) if context is not None else None
    cond = teacher.prompt_index(text.to(x.device))  # (B,)
    free = teacher.prompt_index(uncond.to(x.device)) if guidance > 0 else None
    x0 = x
    for s_now, s_next in zip(sig, sig[1:]):
        if states is not None:
            states[s_now] = x.float()
        sigma = torch.full((b, num_frames), s_now, device=x.device)
        x0 = teacher.x0(x, sigma, cond, context_logp=logp)
        if guidance > 0:
            x0 = x0 + guidance * (x0 - teacher.x0(x, sigma, free, context_logp=logp))
        flow = (x - x0) / s_now
        x = x + (s_next - s_now) * flow
    return x0.float()
