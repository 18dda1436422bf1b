#!/usr/bin/env python
"""GPU checks for issues 4, 7, 8 and 15: one script, run once on a CUDA machine (CI has no GPU).

    PYTHONPATH=. python scripts/gpu_check.py --out DIR [--budget 450] [--only batched epoch]
    PYTHONPATH=. python scripts/gpu_check.py --dry --only batched epoch     # CPU, tiny sizes, seconds (tests/test_gpu_check.py)

Sections (each one's failure is recorded and the others go on; a section that would not finish in the budget is skipped):
- `batched`: issue 15's step times, per-task loop against `task_batching='vmap'`, for base, `+T`, `+TC²` and `+TC²` second
  order (which keeps the loop under 'vmap'), and on CUDA `+TC²` with stage 1's objective compiled (`compile=True`; loop
  and vmap), ResNet-18, 32 px, batch 256, bf16 autocast, channels_last; ms and × base.
- `step`: issue 4's step-time table on GPU, ResNet-18 (CIFAR stem), 32 px RGB, batch 256, K=4, m=4, m'=2, bf16 autocast
  and channels_last, through `scripts/bench_step.py`.
- `augment`: views/s of the batched GPU augmentation (SimCLR and BYOL CIFAR recipes, 32 px, batch 256, m=2).
- `sync`: host synchronisations inside one training step, counted by `torch.cuda.set_sync_debug_mode('warn')`
  (the step itself, without the logging that asks for `.item()`), with the file and line of each; `+TC²` with the
  loop and batched (`task_batching='vmap'`, SimCLR and BYOL, whose predictor's BatchNorm runs in the batched loss).
- `bf16`: the outer gradient of one `base` and one `+TC²` step under bf16 autocast against float32 with TF32 off
  (cosine, relative error; a second float32 run is the floor).
- `vmap`: K tasks' query passes at their own fast weights as a loop of `functional_call`s against one `torch.func.vmap`.
- `compile`: `torch.compile` of the backbone for `base`: gradients against eager (float32) and step time (bf16).
- `epoch`: issue 7's ResNet-18 CIFAR-10-size epoch time for SimCLR `base`, `+TC²` (loop) and `+TC²` with
  `task_batching='vmap'` (issue 15) through `pretrain` (50,000 random uint8 32x32 RGB images: the machine has no
  internet and the timing depends on shapes only).
- `determinism`: 4 steps of `+TC²` twice with `deterministic=True` and twice without; bitwise equality of the
  parameters, and the ops that torch reports as nondeterministic (`warn_only=True` warnings).
Writes `gpu_check.json` and `gpu_check.md` into `--out` after every section.
"""
from __future__ import annotations
import argparse, contextlib, copy, json, os, subprocess, sys, time, traceback, warnings
from functools import partial
from pathlib import Path
from types import SimpleNamespace
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE)); sys.path.insert(0, str(HERE.parent))


class RandomImages(torch.utils.data.Dataset):
    "CIFAR-10-shaped data: `n` random uint8 RGB images with 10 labels (timing depends on the shapes only)."
    def __init__(self, n=50_000, size=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 10, (n,), generator=g)
        self.channels, self.image_size = 3, size
    def __len__(self): return len(self.images)
    def __getitem__(self, i): return self.images[i], int(self.labels[i])


def step_args(**kw):
    return SimpleNamespace(**dict(dict(method='simclr', backbone=BACKBONE, batch=BATCH, channels=3, size=32,
                                       foreach=DEV == 'cuda', device=DEV), **kw))


def outer_grads(method): return torch.cat([p.grad.flatten().double() for p in method.parameters() if p.grad is not None])


def run_step(variant, method, x, augment, stage1, cfg, autocast, seed=0):
    from tc2_nb.bilevel import plain_step, bilevel_step, TC2Settings
    g = torch.Generator(x.device).manual_seed(seed)
    for p in method.parameters(): p.grad = None
    if variant == 'base': terms, _ = plain_step(method, x, augment, g, autocast=autocast)
    else: terms, _ = bilevel_step(method, x, augment, g, TC2Settings.from_config(cfg), stage1, autocast=autocast)
    return terms


DEV, BATCH, N_EPOCH, BACKBONE = 'cuda', 256, 50_000, 'resnet18'  # --smoke: cpu, 32, 512; --dry: cpu, 16, 64, small_cnn
BF16 = partial(torch.autocast, 'cuda', dtype=torch.bfloat16)
def sync(): torch.cuda.synchronize() if DEV == 'cuda' else None


@contextlib.contextmanager
def no_tf32():
    "True float32 convolutions and matmuls (TF32 off) for a comparison against bf16 or compiled code."
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try: yield
    finally: torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def sec_step(out):
    cmd = [sys.executable, str(HERE/'bench_step.py'), '--device', DEV, '--backbone', 'resnet18', '--size', '32',
           '--channels', '3', '--steps', '20' if DEV == 'cuda' else '1', '--warmup', '5' if DEV == 'cuda' else '0', '--threads', '4',
           '--batch', str(BATCH)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    if r.returncode: raise RuntimeError(r.stderr[-3000:])
    return dict(table=r.stdout)


def sec_batched(out):
    """Step time, loop against vmap (issue 15): each variant's own trainer step (`bench_step.make_stepper`), variants
    taking turns one step each per round so that a change in the machine's load hits all alike; median ms, × base."""
    import statistics
    from bench_step import make_stepper
    variants = ['base', 'T', 'T-vmap', 'TC2', 'TC2-vmap', 'TC2-2nd', 'TC2-2nd-vmap']
    if DEV == 'cuda': variants += ['TC2-compiled', 'TC2-vmap-compiled']     # stage 1 compiled (compile=True); the CPU test is tests/test_compile.py
    warm, steps = (5, 20) if DEV == 'cuda' else (1, 2)
    steppers = {v: make_stepper(v, step_args(), torch.device(DEV)) for v in variants}
    times = {v: [] for v in variants}
    for r in range(warm + steps):
        for v in variants:
            t = steppers[v]()[0]
            if r >= warm: times[v].append(t)
    ms = {v: statistics.median(t) * 1e3 for v, t in times.items()}
    rows = [f"| {v} | {ms[v]:.1f} | {ms[v] / ms['base']:.2f} |" for v in variants]
    res = dict(ms={v: round(m, 2) for v, m in ms.items()}, x_base={v: round(m / ms['base'], 3) for v, m in ms.items()})
    res['table'] = '\n'.join([f"{BACKBONE}, 32 px, batch {BATCH}, {'bf16, channels_last' if DEV == 'cuda' else 'cpu (dry)'}",
                              '| variant | ms/step | x base |', '|---|---|---|', *rows])
    return res


def sec_augment(out):
    from tc2_nb.views import make_augment
    res = {}
    x = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, device=DEV)
    for recipe in ('simclr', 'byol'):
        aug = make_augment(recipe, 32, 3).to(DEV)
        g = torch.Generator(DEV).manual_seed(0)
        for _ in range(5): aug(x, 2, g)
        sync(); t = time.perf_counter(); n = 50
        for _ in range(n): aug(x, 2, g)
        sync()
        res[recipe] = dict(views_per_s=round(n * BATCH * 2 / (time.perf_counter() - t)))
    return res


def sec_sync(out):
    from bench_step import build
    res = {}
    for name, variant, mth in (('simclr base', 'base', 'simclr'), ('simclr TC2', 'TC2', 'simclr'), ('moco base', 'base', 'moco'),
                               ('simclr TC2 batched', 'TC2-vmap', 'simclr'), ('byol TC2 batched', 'TC2-vmap', 'byol')):
        cfg, method, augment, x, stage1, opt, sched = build(variant, step_args(method=mth), torch.device(DEV))
        for _ in range(2): run_step(variant, method, x, augment, stage1, cfg, BF16); opt.step()
        sync()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            if DEV == 'cuda': torch.cuda.set_sync_debug_mode('warn')
            try:
                run_step(variant, method, x, augment, stage1, cfg, BF16); opt.step(); sched.step(); method.after_step(0.5)
            finally:
                if DEV == 'cuda': torch.cuda.set_sync_debug_mode('default')
        where = [f'{Path(m.filename).name}:{m.lineno}' for m in w if 'called a synchronizing' in str(m.message)]
        res[name] = dict(syncs=len(where), where={k: where.count(k) for k in sorted(set(where))})
    return res


def sec_bf16(out):
    "Outer gradient of one step under bf16 autocast against float32 (TF32 off), for base and +TC2; fp32 twice is the floor."
    from bench_step import build
    res = {}
    with no_tf32():
        for variant in ('base', 'TC2'):
            grads = {}
            for name, ac in (('fp32', contextlib.nullcontext), ('fp32_again', contextlib.nullcontext), ('bf16', BF16)):
                cfg, method, augment, x, stage1, opt, sched = build(variant, step_args(), torch.device(DEV))
                run_step(variant, method, x, augment, stage1, cfg, ac)
                grads[name] = outer_grads(method)
            a = grads['fp32']
            res[variant] = {k: dict(cosine=round(float(torch.nn.functional.cosine_similarity(a, g, dim=0)), 5),
                                    rel_err=round(float((a - g).norm() / a.norm()), 5)) for k, g in grads.items() if k != 'fp32'}
    return res


def sec_vmap(out):
    """Measure first (issue 4): K=4 tasks' query passes at their own fast weights θ_k, forward and backward, as a loop of
    `functional_call`s (what stage 2 does) against one `torch.func.vmap` over the stacked θ_k (BatchNorm statistics per task
    either way). ResNet-18, 64 images x 2 views per task, bf16 autocast."""
    from torch.func import vmap
    from bench_step import build
    from tc2_nb.bilevel import call_with
    cfg, method, augment, x, stage1, opt, sched = build('T', step_args(), torch.device(DEV))
    K, n = 4, BATCH // 4
    views = torch.randn(K, n, 2, 3, 32, 32, device=DEV)
    names = [k for k, _ in method.named_parameters()]
    bufs = {k: b for k, b in method.named_buffers() if b is not None and b.is_floating_point()}
    stacked = {k: p.detach().unsqueeze(0).repeat(K, *([1] * p.ndim)).requires_grad_(True) for k, p in method.named_parameters()}
    sbuf = {k: b.unsqueeze(0).repeat(K, *([1] * b.ndim)) for k, b in bufs.items()}
    embed = lambda m, v: m.embed(v)
    def loop(ac, dt):
        for k in range(K):
            state = {**{nm: stacked[nm][k] for nm in names}, **{b: sbuf[b][k].clone() for b in bufs}}
            with ac(): z = call_with(method, state, embed, views[k])
            z.float().square().mean().backward()
    def vmapped(ac, dt):
        f = lambda p, b, v: call_with(method, {**p, **b}, embed, v)
        with ac(): z = vmap(f, randomness='different')(stacked, {b: t.clone().to(dt) for b, t in sbuf.items()}, views)
        z.float().square().mean().backward()
    res = {}
    for prec, ac, dt in (('fp32', contextlib.nullcontext, torch.float32), ('bf16', BF16, torch.bfloat16)):
        for name, fn in (('loop', loop), ('vmap', vmapped)):
            try:
                for _ in range(3): fn(ac, dt)
                sync(); t = time.perf_counter()
                for _ in range(10): fn(ac, dt)
                sync(); res[f'{name}_{prec}_ms'] = round((time.perf_counter() - t) / 10 * 1e3, 2)
            except Exception as e: res[f'{name}_{prec}_error'] = f'{type(e).__name__}: {str(e)[:300]}'
    return res


def sec_compile(out):
    from bench_step import build
    cfg, eager, augment, x, stage1, opt, sched = build('base', step_args(), torch.device(DEV))
    comp = copy.deepcopy(eager); comp.backbone.compile()
    t0 = time.perf_counter()
    with no_tf32():
        run_step('base', eager, x, augment, None, cfg, contextlib.nullcontext)
        run_step('base', comp, x, augment, None, cfg, contextlib.nullcontext)
    compile_s = time.perf_counter() - t0
    ge, gc = outer_grads(eager), outer_grads(comp)
    res = dict(fp32_grad_rel_err=float((ge - gc).norm() / ge.norm()), first_call_s=round(compile_s, 1))
    for name, m in (('eager', eager), ('compiled', comp)):
        for _ in range(5): run_step('base', m, x, augment, None, cfg, BF16)
        sync(); t = time.perf_counter()
        for _ in range(20): run_step('base', m, x, augment, None, cfg, BF16)
        sync()
        res[f'{name}_bf16_step_ms' if DEV == 'cuda' else f'{name}_step_ms'] = round((time.perf_counter() - t) / 20 * 1e3, 2)
    return res


def _cfg(**kw):
    from tc2_nb.train_config import TrainConfig
    base = dict(method='simclr', backbone=BACKBONE, dataset='cifar10', batch_size=BATCH, epochs=1, n_tasks=4, n_views=4,
                n_support=2, probe_every=0, log_every=50, ckpt_every=0, device=DEV, progress=False)
    return TrainConfig(**dict(base, **kw))


def sec_epoch(out):
    from tc2_nb.trainer import pretrain
    ds = RandomImages(N_EPOCH)
    res = {}
    for name in ('base', 'TC2', 'TC2-vmap'):
        variant, batching = name.split('-')[0], 'vmap' if name.endswith('-vmap') else 'loop'
        sync(); t = time.perf_counter()
        r = pretrain(_cfg(variant=variant, task_batching=batching), train_dataset=ds)
        sync(); s = time.perf_counter() - t
        views = 2 if variant == 'base' else 4
        res[name] = dict(epoch_s=round(s, 1), steps=r.steps, img_per_s=round(r.steps * BATCH / s),
                            view_img_per_s=round(r.steps * BATCH * views / s), final_loss=r.summary.get('final_loss'))
    res['TC2_over_base'] = round(res['TC2']['epoch_s'] / res['base']['epoch_s'], 2)
    res['TC2_vmap_over_base'] = round(res['TC2-vmap']['epoch_s'] / res['base']['epoch_s'], 2)
    return res


def sec_determinism(out):
    from tc2_nb.trainer import pretrain
    ds = RandomImages(n=16 * BATCH)
    res = {}
    for det in (True, False):
        params = []
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            for _ in range(2):
                r = pretrain(_cfg(variant='TC2', max_steps=4, deterministic=det), train_dataset=ds)
                params.append(torch.cat([p.detach().flatten().float().cpu() for p in r.method.parameters()]))
        nondet = sorted({str(m.message).splitlines()[0][:200] for m in w if 'determinis' in str(m.message)})
        res['deterministic' if det else 'default'] = dict(bitwise_equal=bool(torch.equal(*params)),
                                                         max_abs_diff=float((params[0] - params[1]).abs().max()),
                                                         nondeterministic_ops=nondet)
    return res


SECTIONS = dict(batched=(sec_batched, 60), epoch=(sec_epoch, 110), sync=(sec_sync, 20), step=(sec_step, 120), augment=(sec_augment, 10),
                bf16=(sec_bf16, 20), vmap=(sec_vmap, 20), determinism=(sec_determinism, 40), compile=(sec_compile, 90))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='runs/gpu_check'); ap.add_argument('--budget', type=float, default=450)
    ap.add_argument('--only', nargs='*', help='sections to run (default: all)')
    ap.add_argument('--smoke', action='store_true', help='a quick CPU dry run of every code path (tiny sizes)')
    ap.add_argument('--dry', action='store_true', help='a CPU run in seconds: small CNN, batch 16, a 64-image epoch')
    args = ap.parse_args()
    global DEV, BATCH, N_EPOCH, BACKBONE
    if args.smoke: DEV, BATCH, N_EPOCH = 'cpu', 32, 512
    elif args.dry: DEV, BATCH, N_EPOCH, BACKBONE = 'cpu', 16, 64, 'small_cnn'
    elif not torch.cuda.is_available(): sys.exit('gpu_check: no CUDA device')
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    res = dict(env=dict(torch=torch.__version__, gpu=torch.cuda.get_device_name() if DEV == 'cuda' else 'none (smoke)',
                        capability=torch.cuda.get_device_capability() if DEV == 'cuda' else None, cudnn=torch.backends.cudnn.version()))
    if DEV == 'cpu': torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', 2)))
    for name, (fn, guess) in SECTIONS.items():
        if args.only and name not in args.only: continue
        left = args.budget - (time.time() - t_start)
        if left < guess: res[name] = dict(skipped=f'{left:.0f} s left of the budget, about {guess} s needed'); continue
        t = time.time()
        try: res[name] = fn(out)
        except Exception: res[name] = dict(error=traceback.format_exc()[-3000:])
        res[name]['seconds'] = round(time.time() - t, 1)
        print(f'== {name} ({res[name]["seconds"]} s)', flush=True)
        print(json.dumps(res[name], indent=1, default=str) if name != 'step' or 'table' not in res[name] else res[name]['table'], flush=True)
        (out/'gpu_check.json').write_text(json.dumps(res, indent=1, default=str))
    md = [f"# GPU check: {res['env']['gpu']}, torch {res['env']['torch']}", '']
    for k, v in res.items():
        md += [f'## {k}', '```', v['table'] if isinstance(v, dict) and 'table' in v else json.dumps(v, indent=1, default=str), '```', '']
    (out/'gpu_check.md').write_text('\n'.join(md))


if __name__ == '__main__':
    main()
