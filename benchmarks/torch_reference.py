"""A PyTorch (eager, CPU) reference of the same solver, GANs and train steps, for benchmarking.

Same architectures (layer by layer, including the conv generator's sub-pixel upsampling and
BatchNorm), same batch, same optimizers (Adam with the same hyperparameters), same GAN step
(D update on real + generated, then G update through the updated D on the same latents).
`check_equivalence()` loads the JAX models' initial weights into these modules and compares
parameter counts, losses and updated parameters on a fixed batch.

Install with `pip install -e ".[bench]"`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Solver(nn.Module):
    def __init__(self, hidden=(400, 400)):
        super().__init__()
        sizes = (784, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], 10)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)


class MLPGenerator(nn.Module):
    def __init__(self, latent=100):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(latent, 256), nn.Linear(256, 512), nn.Linear(512, 784)

    def forward(self, z):
        x = F.leaky_relu(self.l1(z), 0.2)
        x = F.leaky_relu(self.l2(x), 0.2)
        return torch.tanh(self.l3(x)).reshape(z.shape[0], 1, 28, 28)


class MLPDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(784, 512), nn.Linear(512, 256), nn.Linear(256, 1)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        x = F.leaky_relu(self.l1(x), 0.2)
        x = F.leaky_relu(self.l2(x), 0.2)
        return self.l3(x)[:, 0]


class ConvGenerator(nn.Module):
    """z -> 7x7x(2w) -> 14x14xw -> 28x28x1 with sub-pixel upsampling, as gr_jax.models."""

    def __init__(self, width=48, latent=100, kernel=3):
        super().__init__()
        self.w = width
        self.fc = nn.Linear(latent, 7 * 7 * 2 * width)
        self.bn0 = nn.BatchNorm1d(7 * 7 * 2 * width, momentum=0.1, eps=1e-5)
        self.up1 = nn.Conv2d(2 * width, 4 * width, kernel, padding=kernel // 2)
        self.bn1 = nn.BatchNorm2d(width, momentum=0.1, eps=1e-5)
        self.up2 = nn.Conv2d(width, 4, kernel, padding=kernel // 2)

    def forward(self, z):
        x = F.relu(self.bn0(self.fc(z)))
        x = x.reshape(z.shape[0], 7, 7, 2 * self.w).permute(0, 3, 1, 2)  # flax's NHWC order
        x = F.relu(self.bn1(F.pixel_shuffle(self.up1(x), 2)))
        return torch.tanh(F.pixel_shuffle(self.up2(x), 2))


class ConvDiscriminator(nn.Module):
    def __init__(self, width=48):
        super().__init__()
        self.c1 = nn.Conv2d(1, width, 4, stride=2, padding=1)
        self.c2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
        self.fc = nn.Linear(7 * 7 * 2 * width, 1)

    def forward(self, x):
        x = F.leaky_relu(self.c1(x), 0.2)
        x = F.leaky_relu(self.c2(x), 0.2)
        return self.fc(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))[:, 0]  # flatten as NHWC


def make_gan(kind: str, width: int = 48, latent: int = 100):
    if kind == "conv":
        return ConvGenerator(width, latent), ConvDiscriminator(width)
    return MLPGenerator(latent), MLPDiscriminator()


class GAN:
    """G and D with their Adam optimizers; `step` is the same update as gr_jax.gan.gan_step."""

    def __init__(
        self,
        kind: str,
        width: int = 48,
        latent: int = 100,
        lr=2e-4,
        beta1=0.5,
        device="cpu",
        autocast: bool = False,
    ):
        self.g, self.d = (m.to(device) for m in make_gan(kind, width, latent))
        self.latent, self.device = latent, device
        # autocast: the forward and backward passes in bfloat16 where PyTorch allows it
        # (matrix products, convolutions), weights and Adam in float32, like gan_dtype
        self.autocast = torch.autocast(device.split(":")[0], torch.bfloat16, enabled=autocast)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr, betas=(beta1, 0.999), eps=1e-8)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(beta1, 0.999), eps=1e-8)

    def step(self, real: torch.Tensor, z: torch.Tensor | None = None) -> dict:
        n = real.shape[0]
        if z is None:
            z = torch.randn(n, self.latent, device=self.device)
        with self.autocast:
            fake = self.g(z)
            logits = self.d(torch.cat([real, fake.detach()])).float()
        d_loss = F.softplus(-logits[:n]).mean() + F.softplus(logits[n:]).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        with self.autocast:
            fake_logits = self.d(fake).float()
        g_loss = F.softplus(-fake_logits).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        # detached tensors, not floats: reading a GPU value every step would sync the device
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


class SolverTrainer:
    def __init__(self, hidden=(400, 400), lr=1e-3, device="cpu"):
        self.model = Solver(hidden).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, eps=1e-8)

    def step(self, x, y) -> torch.Tensor:
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


# --- loading gr_jax's (Flax) weights, to check that both compute the same thing ---------------


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _dense(layer: nn.Linear, p) -> None:
    layer.weight.data, layer.bias.data = _t(p["kernel"]).T.contiguous(), _t(p["bias"])


def _conv(layer: nn.Conv2d, p, subpixel: bool = False) -> None:
    w = _t(p["kernel"]).permute(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
    b = _t(p["bias"])
    if subpixel:  # flax depth_to_space channel (s*C + c) -> torch pixel_shuffle (c*4 + s)
        out = w.shape[0] // 4
        w = w.reshape(4, out, *w.shape[1:]).transpose(0, 1).reshape(w.shape)
        b = b.reshape(4, out).T.reshape(-1)
    layer.weight.data, layer.bias.data = w.contiguous(), b.contiguous()


def _bn(layer, p) -> None:
    layer.weight.data, layer.bias.data = _t(p["scale"]), _t(p["bias"])


def load_solver(model: Solver, params) -> None:
    for i, layer in enumerate(model.hidden):
        _dense(layer, params[f"Dense_{i}"])
    _dense(model.out, params[f"Dense_{len(model.hidden)}"])


def load_gan(g: nn.Module, d: nn.Module, g_params, d_params) -> None:
    if isinstance(g, ConvGenerator):
        _dense(g.fc, g_params["Dense_0"])
        _bn(g.bn0, g_params["BatchNorm_0"])
        _conv(g.up1, g_params["SubPixelUp_0"]["Conv_0"], subpixel=True)
        _bn(g.bn1, g_params["BatchNorm_1"])
        _conv(g.up2, g_params["SubPixelUp_1"]["Conv_0"], subpixel=True)
        _conv(d.c1, d_params["Conv_0"])
        _conv(d.c2, d_params["Conv_1"])
        _dense(d.fc, d_params["Dense_0"])
    else:
        for layer, name in zip((g.l1, g.l2, g.l3), ("Dense_0", "Dense_1", "Dense_2")):
            _dense(layer, g_params[name])
        for layer, name in zip((d.l1, d.l2, d.l3), ("Dense_0", "Dense_1", "Dense_2")):
            _dense(layer, d_params[name])


def check_equivalence(width: int = 48, batch: int = 64) -> list[dict]:
    """Same initial weights, same batch, same latents: compare counts, losses, updated params."""
    import jax
    import jax.numpy as jnp

    from gr_jax import gan as jgan
    from gr_jax import solver as jsolver

    rows = []
    key = jax.random.PRNGKey(0)
    real = jax.random.uniform(key, (batch, 28, 28, 1)) * 2 - 1
    real_t = _t(real).permute(0, 3, 1, 2).contiguous()
    for kind in ("mlp", "conv"):
        js = jgan.create_gan_state(key, kind, width, 100, 2e-4, 0.5)
        tg = GAN(kind, width)
        load_gan(tg.g, tg.d, js.g.params, js.d.params)
        step_key = jax.random.PRNGKey(1)
        z = jax.random.normal(step_key, (batch, 100))
        js2, m = jgan.gan_step(js, real, jnp.zeros((real.shape[0],), jnp.int32), step_key)
        tm = tg.step(real_t, _t(z))
        n_jax = sum(x.size for x in jax.tree_util.tree_leaves((js.g.params, js.d.params)))
        n_torch = sum(p.numel() for p in (*tg.g.parameters(), *tg.d.parameters()))
        tg2 = GAN(kind, width)
        load_gan(tg2.g, tg2.d, js2.g.params, js2.d.params)
        diff = max(
            float((a - b).detach().abs().max())
            for a, b in zip(
                (*tg.g.parameters(), *tg.d.parameters()),
                (*tg2.g.parameters(), *tg2.d.parameters()),
            )
        )
        rows.append(
            {
                "model": f"{kind} GAN",
                "params_jax": n_jax,
                "params_torch": n_torch,
                "d_loss_jax": float(m["d_loss"]),
                "d_loss_torch": float(tm["d_loss"]),
                "g_loss_jax": float(m["g_loss"]),
                "g_loss_torch": float(tm["g_loss"]),
                "max_param_diff_after_step": diff,
            }
        )
    st = jsolver.create_solver_state(key, (400, 400), 1e-3)
    labels = jax.random.randint(key, (batch,), 0, 10)
    _, loss, _ = jsolver.apply_model(st, real, labels)
    ts = SolverTrainer()
    load_solver(ts.model, st.params)
    t_loss = ts.step(real_t, torch.from_numpy(np.array(labels)).long())
    rows.append(
        {
            "model": "solver",
            "params_jax": sum(x.size for x in jax.tree_util.tree_leaves(st.params)),
            "params_torch": sum(p.numel() for p in ts.model.parameters()),
            "loss_jax": float(loss),
            "loss_torch": float(t_loss),
        }
    )
    return rows
