"""Train one shipped VAE with ued's `cpu` preset under a wall-clock budget (one CPU thread), then save fp16.
usage: python ship.py ENV MINUTES OUT [LR] """
import sys, time, json, torch
torch.set_num_threads(1)
from ued.levels import make_family
from ued.config import vae_preset
from ued.vae import pretrain_vae, save_vae, PretrainInterrupted
env, minutes, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
fam = make_family(env)
cfg = vae_preset("cpu")
if len(sys.argv) > 4:
    cfg.lr = float(sys.argv[4])
ckpt = out + ".ckpt"
deadline = time.time() + minutes * 60
t0 = time.time()
try:
    pretrain_vae(fam, cfg, steps=cfg.steps, seed=0, progress=True, checkpoint=ckpt, checkpoint_interval=500,
                 eval_interval=1000, log_dir=out + ".tb", should_stop=lambda: time.time() > deadline)
    done = cfg.steps
except PretrainInterrupted as stop:
    done = stop.step
print(f"stopped at step {done} after {time.time()-t0:.0f}s", flush=True)
vae, report = pretrain_vae(fam, cfg, steps=done, seed=0, progress=False, checkpoint=ckpt, resume=True,
                           round_half=True)
cfg.steps = done
save_vae(out, vae, cfg, fam.name, dict(fam.options), report, half=True)
print(json.dumps(report, indent=1, default=str), flush=True)
