"""``attacks.fedavg(..., independent=True)`` shards the clients over the local devices.

Run in a subprocess with four forced CPU devices (``XLA_FLAGS`` must be set before jax is
imported): five clients (padded to eight), sharded, give the same losses and images as
attacking the clients one by one."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from leakage_lab import attacks, fedavg, fl, models

    assert len(jax.local_devices()) == 4, jax.local_devices()
    shape = (4, 4, 1)
    model = models.mlp(num_classes=3, input_shape=shape, hidden=(8,))
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    y = np.zeros(6, np.int32)               # one label: every client's split is the same
    xs = [rng.uniform(0, 1, (6, *shape)).astype(np.float32) for _ in range(5)]
    thetas = [fl.client_update(model, params, x, y, lr=0.5, epochs=2, batch_size=3,
                               key=jax.random.key(9)) for x in xs]
    counts = np.bincount(y, minlength=3)
    pattern = jnp.asarray(rng.normal(size=(1, 2, 2, 3, *shape)), jnp.float32)

    def init(key, s):                       # the same start for every client
        return jnp.broadcast_to(pattern, s)

    kw = dict(lr=0.5, epochs=2, batch_size=3, steps=6, key=jax.random.key(4), init=init,
              invariant_weight=10.0, chunk=3, optimizer=optax.adam(0.01),
              normalization=((0.5,), (0.25,)))
    both = attacks.fedavg(model, params, thetas, label_counts=np.stack([counts] * 5),
                          independent=True, **kw)
    mesh = fedavg.client_mesh()
    alone = [attacks.fedavg(model, params, t, label_counts=counts, **kw) for t in thetas]
    two = attacks.fedavg(model, params, thetas, label_counts=np.stack([counts] * 5),
                         independent=True, devices=2, **kw)
    print(json.dumps({
        "mesh": [mesh.size, list(mesh.axis_names)],
        "losses": both.losses.tolist(), "alone": np.sum([a.losses for a in alone], 0).tolist(),
        "two": two.losses.tolist(),
        "images": np.asarray(both.images).tolist(),
        "images_alone": np.concatenate([a.images for a in alone]).tolist(),
        "epoch": np.asarray(both.epoch_images).tolist(),
        "epoch_alone": np.concatenate([a.epoch_images for a in alone], axis=1).tolist(),
    }))
""")


def test_sharded_clients_equal_one_by_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    import numpy as np

    assert out["mesh"] == [4, ["clients"]]
    np.testing.assert_allclose(out["losses"], out["alone"], rtol=1e-4)
    np.testing.assert_allclose(out["two"], out["alone"], rtol=1e-4)
    np.testing.assert_allclose(out["images"], out["images_alone"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["epoch"], out["epoch_alone"], rtol=1e-4, atol=1e-5)
    assert np.shape(out["images"]) == (30, 4, 4, 1)
