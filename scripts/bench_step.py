"""Step time of one training step: base SimCLR (2 views) against `+T`, `+TC²` first order and `+TC²` second order.
A variant name ending in `-vmap` (`T-vmap`, `TC2-vmap`) runs stage 2 with `task_batching='vmap'`; one ending in
`-compiled` (`TC2-compiled`, `TC2-vmap-compiled`) compiles stage 1's objective (`compile=True`).

Setting (issue 4): batch 256, the small CNN, 28 px one-channel images, 2 CPU threads, K=4, m=4, m'=2.
Each variant runs the trainer's own step (zero_grad, `plain_step`/`bilevel_step`, optimiser and schedule
step, `after_step`) on random uint8 images; warm-up steps are not timed; the median over timed steps is
reported with the ratio to base. The variants take turns step by step, so that the load of a shared
machine affects them alike. METHOD.md's floor for first-order TC² is 14/6 = 2.33x base.

    python scripts/bench_step.py [--steps 6] [--threads 2] [--batch 256] [--device cpu]
        [--backbone small_cnn] [--size 28] [--channels 1] [--variants base,T,TC2,TC2-2nd]

`--ops`: instead of timing, count the aten ops dispatched during one step (after one warm-up step), with a
`TorchDispatchMode` counter: all ops, the non-view ops (views and `detach` alias their input and launch no
kernel) and convolution ops (forward and backward), each as a multiple of base; then all ops by stage of the step
(the views' augmentation, the support passes, stage 1, ..., 'rest': base's pass and the outer optimiser). Torch's optimisers (stage 1's Adam)
run with `foreach=True` as they do on CUDA (`--foreach off`: the CPU's per-tensor loop); LARS has no foreach form. On a GPU each non-view op is
about one kernel launch, so this is the launch count that a launch-bound step pays.

    python scripts/bench_step.py --ops --variants base,T,TC2,TC2-vmap [--backbone resnet18 --size 32 --channels 3]

`--kernels`: what one step runs, as torch.profiler's leaf events (aten ops with no aten op inside, and inductor's fused
CPU kernels), so that a compiled step (`-compiled`), which a dispatch mode cannot count, compares with eager ones. Its
unit is finer than `--ops` (it also sees the allocations and strided copies inside an op): compare within it only.

    python scripts/bench_step.py --kernels --variants base,TC2-vmap,TC2-vmap-compiled
"""
from __future__ import annotations
import argparse, collections, contextlib, os, statistics, time
from functools import partial
import torch


def build(variant, args, device):
    from tc2_nb.train_config import TrainConfig, uses_calibration
    from tc2_nb.trainer import build_method, build_calibrator, build_outer, representation_dim
    from tc2_nb.bilevel import Stage1
    from tc2_nb.views import make_augment
    v, compiled = (variant[:-len('-compiled')], True) if variant.endswith('-compiled') else (variant, False)
    v, batching = (v[:-len('-vmap')], 'vmap') if v.endswith('-vmap') else (v, 'loop')
    v, second = ('TC2', True) if v == 'TC2-2nd' else (v, False)
    cfg = TrainConfig(method=args.method, backbone=args.backbone, variant=v, batch_size=args.batch, n_tasks=4, n_views=4,
                      n_support=2, second_order=second, epochs=10, device=str(device), probe_every=0, task_batching=batching,
                      compile=compiled)
    torch.manual_seed(0)
    method = build_method(cfg, args.channels, args.size).to(device).train()
    if device.type == 'cuda': method = method.to(memory_format=torch.channels_last)   # as the trainer does on CUDA
    augment = make_augment(method.recipe, args.size, args.channels).to(device)
    x = (torch.rand(args.batch, args.channels, args.size, args.size, device=device) * 255).to(torch.uint8)
    stage1 = None
    if uses_calibration(v):
        cal = build_calibrator(cfg, representation_dim(method, x, augment)).to(device)
        stage1 = Stage1(cal, cfg.alphas, mode=cfg.stage1, query_loss=cfg.query_loss, compiled=cfg.compile)
    opt, sched, _ = build_outer(cfg, method, steps_per_epoch=100)
    if args.foreach:                   # torch's optimisers default to foreach on CUDA: emulate it on the CPU
        for o in [opt] + ([stage1.opt_s, stage1.opt_q] if stage1 else []):
            for grp in o.param_groups:
                if 'foreach' in grp and not grp.get('fused'): grp['foreach'] = True
    return cfg, method, augment, x, stage1, opt, sched


def make_stepper(variant, args, device):
    "A function that runs one training step of `variant` and returns its (wall time, CPU time of this process)."
    from tc2_nb.bilevel import plain_step, bilevel_step, TC2Settings
    cfg, method, augment, x, stage1, opt, sched = build(variant, args, device)
    g = torch.Generator(device).manual_seed(0)
    autocast = partial(torch.autocast, 'cuda', dtype=torch.bfloat16) if device.type == 'cuda' else contextlib.nullcontext
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    def step():
        sync(); t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        if cfg.variant == 'base': terms, _ = plain_step(method, x, augment, g, autocast=autocast)
        else:
            terms, _ = bilevel_step(method, x, augment, g, TC2Settings.from_config(cfg), stage1, autocast=autocast)
        opt.step(); sched.step(); method.after_step(0.5)
        terms['loss'].item()
        sync()
        return time.perf_counter() - t0, time.process_time() - c0
    return step


def op_counter():
    """A dispatch mode that counts every aten op run under it, by name (its `.ops`, a Counter), and by the stage of the
    step it ran in (`.stages`: see `stages`)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    class OpCounter(TorchDispatchMode):
        def __init__(self): super().__init__(); self.ops, self.views, self.stages, self.stage = collections.Counter(), 0, collections.Counter(), ['rest']
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1; self.stages[self.stage[-1]] += 1
            if func.is_view: self.views += 1                        # aliases: no kernel, no launch
            return func(*args, **(kwargs or {}))
    return OpCounter()

STAGES = {'views': ('tc2_nb.methods.base', 'SSLMethod', 'make_views'), 'support': ('tc2_nb.bilevel', 'TaskRunner', 'support'),
          'stage1': ('tc2_nb.bilevel', 'TaskRunner', 'stage1'), 'query_at_θ': ('tc2_nb.bilevel', 'TaskRunner', 'query_at_theta'),
          'V': ('tc2_nb.bilevel', None, 'batch_factors'), 'targets': ('tc2_nb.bilevel', 'TaskRunner', 'calibrated_targets'),
          'stage2': ('tc2_nb.bilevel', 'TaskRunner', 'stage2')}

def _owners(mod:str, cls:str|None, attr:str) -> list:
    "Where `attr` is defined: the module itself (`cls` None), else the class and every subclass that overrides it (MAE's `make_views`)."
    import importlib, tc2_nb.methods                                # every method class, so that its overrides are found
    if cls is None: return [importlib.import_module(mod)]
    todo, found = [getattr(importlib.import_module(mod), cls)], []
    while todo:
        c = todo.pop(); todo += c.__subclasses__()
        if attr in c.__dict__: found.append(c)
    return found

@contextlib.contextmanager
def stages(counter):
    "Inside the block, `counter` files each op under the stage of the step that ran it (`STAGES`; 'rest': the outer optimiser, base's pass)."
    patched = []
    def labelled(fn, name):
        def run(*a, **k):
            counter.stage.append(name)
            try: return fn(*a, **k)
            finally: counter.stage.pop()
        return run
    for name, where in STAGES.items():
        for owner in _owners(*where):
            attr = where[2]
            patched.append((owner, attr, owner.__dict__[attr])); setattr(owner, attr, labelled(owner.__dict__[attr], name))
    try: yield
    finally:
        for owner, attr, fn in patched: setattr(owner, attr, fn)


def count_ops(variants, args, device):
    "Ops per step (all, non-view, convolutions) of each variant, one warm-up step first, and by stage of the step; prints the tables."
    rows, by_stage = {}, {}
    for v in variants:
        step = make_stepper(v, args, device)
        step()                                                      # warm-up: lazy init, first-call paths
        with op_counter() as c, stages(c): step()
        total = sum(c.ops.values())
        rows[v] = total, total - c.views, sum(n for k, n in c.ops.items() if 'convolution' in k)
        by_stage[v] = c.stages
    base = rows.get('base')
    print(f"{'variant':<10} {'ops':>8} {'x base':>7} {'non-view':>9} {'x base':>7} {'conv ops':>9} {'x base':>7}")
    for v, r in rows.items():
        rb = lambda i: r[i] / base[i] if base and base[i] else float('nan')
        print(f"{v:<10} {r[0]:>8} {rb(0):>7.2f} {r[1]:>9} {rb(1):>7.2f} {r[2]:>9} {rb(2):>7.2f}")
    names = [*STAGES, 'rest']
    print(f"# all ops by stage\n{'variant':<10}" + ''.join(f" {n:>11}" for n in names))
    for v, c in by_stage.items(): print(f"{v:<10}" + ''.join(f" {c[n]:>11}" for n in names))
    return rows


def count_kernels(variants, args, device):
    """What one step runs, compiled or not (after 3 warm-up steps, which compile): the leaf events of torch.profiler,
    aten ops with no aten op inside them and inductor's fused CPU kernels (`cpp_fused_*`, profiled one by one); prints
    the table. Unlike `--ops` (a dispatch mode, under which compiled code does not run), it sees a compiled step."""
    import torch._inductor.config as inductor_config
    from torch.profiler import profile, ProfilerActivity
    inductor_config.cpp.enable_kernel_profile = True
    is_op = lambda e: e.name.startswith('aten::') or 'cpp_fused' in e.name
    rows = {}
    for v in variants:
        step = make_stepper(v, args, device)
        for _ in range(3): step()
        with profile(activities=[ProfilerActivity.CPU]) as prof: step()
        leaves = [e for e in prof.events() if is_op(e) and not any(is_op(c) for c in e.cpu_children)]
        rows[v] = len(leaves), sum('cpp_fused' in e.name for e in leaves)
    base = rows.get('base')
    print(f"{'variant':<18} {'leaf events':>12} {'x base':>7} {'fused kernels':>14}")
    for v, (n, fused) in rows.items(): print(f"{v:<18} {n:>12} {n / base[0] if base else float('nan'):>7.2f} {fused:>14}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--steps', type=int, default=6); ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--device', default='cpu'); ap.add_argument('--method', default='simclr')
    ap.add_argument('--backbone', default='small_cnn'); ap.add_argument('--size', type=int, default=28)
    ap.add_argument('--channels', type=int, default=1)
    ap.add_argument('--variants', default='base,T,TC2,TC2-2nd')
    ap.add_argument('--ops', action='store_true', help='count the aten ops of one step instead of timing')
    ap.add_argument('--kernels', action='store_true', help="count one step's leaf profiler events (compiled steps too) instead of timing")
    ap.add_argument('--foreach', choices=('auto', 'on', 'off'), default='auto',
                    help="foreach (multi-tensor) Adam/AdamW/SGD, as torch chooses on CUDA; auto: on with --ops or on CUDA")
    args = ap.parse_args()
    args.foreach = args.foreach == 'on' or (args.foreach == 'auto' and (args.ops or args.kernels or args.device.startswith('cuda')))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(f"# foreach optimisers {args.foreach}; " if args.ops or args.kernels else '', end='')
    print(f"# {args.method}, {args.backbone}, {args.size}px x{args.channels}, batch {args.batch}, K=4 m=4 m'=2, "
          f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"threads {args.threads}, torch {torch.__version__}, load average before {load:.2f}")
    if args.ops: count_ops(args.variants.split(','), args, device); return
    if args.kernels: count_kernels(args.variants.split(','), args, device); return
    # variants take turns, one step each per round, so that a change in the machine's load hits all of them alike
    variants = args.variants.split(',')
    steppers = {v: make_stepper(v, args, device) for v in variants}
    times = {v: [] for v in variants}
    for r in range(args.warmup + args.steps):
        for v in variants:
            t = steppers[v]()
            if r >= args.warmup: times[v].append(t)
    med = lambda xs: statistics.median(xs)
    rows = [(v, med([t[0] for t in times[v]]), min(t[0] for t in times[v]), med([t[1] for t in times[v]])) for v in variants]
    base = {r[0]: r for r in rows}.get('base')
    print(f"{'variant':<10} {'wall median':>12} {'wall min':>9} {'x base':>7} {'x base (min)':>13} {'CPU median':>11} {'x base':>7}")
    for v, wm, wmin, cm in rows:
        rb = lambda a, i: a / base[i] if base else float('nan')
        print(f"{v:<10} {wm:>11.3f}s {wmin:>8.3f}s {rb(wm, 1):>7.2f} {rb(wmin, 2):>13.2f} {cm:>10.3f}s {rb(cm, 3):>7.2f}")
    print(f"# load average after {os.getloadavg()[0]:.2f}; floor for TC2 first order: 14/6 = 2.33x "
          f"(CPU time counts the work of all threads, so it is the figure least affected by other processes)")


if __name__ == '__main__':
    main()
