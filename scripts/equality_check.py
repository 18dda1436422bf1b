"""Issue 32's guard for the training core's rebuild: a tiny run of every method × variant (and the batched task path
where a variant takes an inner step), whose final parameters, optimiser-free state and logged terms are saved before a
change (`--save DIR`) and compared after it (`--against DIR`): the loop path bitwise, the batched path within 1e-5
relative. Run both sides on one machine, one thread: float results differ between CPUs.
The batched comparison holds only for a change that keeps the batched path's arithmetic. A change that rounds
differently on purpose (the grouped layers of `08bb_grouped`) breaks it by design: these tiny runs (8 images, 2
per task) amplify rounding chaotically (old loop against old vmap already differ by up to 0.5 relative after 8
steps), so that path's check is then `tests/test_task_batching.py` (one step against the loop, every method), and
a new `--save` baseline follows.
`--one-step` measures such a change before chaos grows: one step on 8 images, and for the batched path it reports the
largest per-tensor relative difference in norm of the final parameters (model and calibrator) instead of judging it
(the loop is still held to bitwise). The old batched path against the old loop is the scale to read it against.
Usage: python scripts/equality_check.py --save /tmp/eq_before      (before the change)
       python scripts/equality_check.py --against /tmp/eq_before   (after it; exit status 1 on any difference)
       python scripts/equality_check.py --one-step --save /tmp/one_before; ... --one-step --against /tmp/one_before"""
import argparse, inspect, sys, tempfile, warnings
from pathlib import Path
import torch

torch.set_num_threads(1)
SIZE, N = 16, 32
SMALL = dict(simclr=dict(proj_hidden_dim=32, proj_output_dim=32), moco=dict(proj_hidden_dim=32, proj_output_dim=32, queue_size=16),
             byol=dict(proj_hidden_dim=32, proj_output_dim=32, pred_hidden_dim=32),
             simsiam=dict(proj_hidden_dim=32, proj_output_dim=32, pred_hidden_dim=16),
             barlow_twins=dict(proj_hidden_dim=32, proj_output_dim=32), swav=dict(proj_hidden_dim=32, proj_output_dim=32, n_prototypes=10),
             vicreg=dict(proj_hidden_dim=32, proj_output_dim=32), mae=dict(decoder_dim=32, decoder_depth=1, decoder_heads=2))

def toy_images(n:int=N):
    "Four blob patterns plus noise (views of one image resemble each other more than other images)."
    from tc2_nb.data import ImageDataset
    g = torch.Generator().manual_seed(0)
    base, lab = torch.rand(4, 1, SIZE, SIZE, generator=g), torch.arange(n) % 4
    x = (0.7 * base[lab] + 0.3 * torch.rand(n, 1, SIZE, SIZE, generator=g)) * 255
    return ImageDataset(x.to(torch.uint8), lab, list('abcd'), 'toy')

def config(method:str, variant:str, batching:str, out_dir:str, epochs:int=2):
    from tc2_nb.methods import METHODS
    from tc2_nb.train_config import TrainConfig
    allowed = inspect.signature(METHODS[method].__init__).parameters
    bb = (dict(backbone='vit_tiny', backbone_kwargs=dict(depth=1, dim=32, heads=2, patch=4)) if method == 'mae'
          else dict(backbone='small_cnn', backbone_kwargs=dict(widths=(8, 16, 16))))
    return TrainConfig(method=method, method_kwargs={k: v for k, v in SMALL[method].items() if k in allowed}, variant=variant,
                       task_batching=batching, epochs=epochs, batch_size=8, n_tasks=4, n_factors=4, probe_every=1, log_every=2,
                       ckpt_every=3, progress=False, device='cpu', dataset='fashion_mnist', optimizer='sgd', lr=0.05,
                       lr_scaling='none', warmup_epochs=0, out_dir=out_dir, **bb)

def cases():
    from tc2_nb.methods import METHODS
    from tc2_nb.train_config import VARIANTS, uses_inner_step
    for m in sorted(METHODS):
        for v in VARIANTS:
            yield m, v, 'loop'
            if uses_inner_step(v) and m != 'mae': yield m, v, 'vmap'   # MAE falls back to the loop (its own test)

def outcome(method, variant, batching, ds, epochs:int=2) -> dict:
    "The run's final state and logs, as tensors."
    from tc2_nb.trainer import pretrain
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r = pretrain(config(method, variant, batching, d, epochs), ds)
    state = {f'method.{k}': v for k, v in r.method.state_dict().items()}
    if r.calibrator is not None: state.update({f'calibrator.{k}': v for k, v in r.calibrator.state_dict().items()})
    for name, frame in (('log', r.log), ('probe', r.probe)):
        num = frame.select_dtypes('number').drop(columns=['img_per_s'], errors='ignore')
        state[f'{name}.columns'] = list(num.columns)
        state[f'{name}.values'] = torch.tensor(num.to_numpy(dtype='float64'))
    return state

def compare(a:dict, b:dict, batched:bool) -> tuple[bool, float]:
    "Equal (bitwise for the loop, 1e-5 relative for the batched path), and the largest relative difference."
    if a.keys() != b.keys(): return False, float('inf')
    ok, worst = True, 0.0
    for k in a:
        x, y = a[k], b[k]
        if not isinstance(x, torch.Tensor):
            ok &= x == y; continue
        if x.shape != y.shape: return False, float('inf')
        if not x.is_floating_point(): ok &= torch.equal(x, y); continue
        rel = ((x.double() - y.double()).abs() / y.double().abs().clamp_min(1e-6)).max().item() if x.numel() else 0.0
        worst = max(worst, rel)
        ok &= torch.allclose(x.double(), y.double(), rtol=1e-5, atol=1e-7) if batched else torch.equal(x, y)
    return bool(ok), worst

def norm_difference(a:dict, b:dict) -> tuple[float, str]:
    "The largest relative difference in norm, ‖a − b‖ / ‖b‖, over the final parameters, and whose it is."
    worst, name = 0.0, ''
    for k, x in a.items():
        if k.startswith(('method.', 'calibrator.')) and isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel():
            r = ((x.double() - b[k].double()).norm() / b[k].double().norm().clamp_min(1e-12)).item()
            if r > worst: worst, name = r, k
    return worst, name

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--save', type=Path); g.add_argument('--against', type=Path)
    ap.add_argument('--one-step', action='store_true', help='one step on 8 images; the batched path reported, not judged')
    a = ap.parse_args()
    ds, failed, epochs = toy_images(8 if a.one_step else N), 0, 1 if a.one_step else 2
    for m, v, b in cases():
        name = f'{m}__{v}__{b}.pt'
        got = outcome(m, v, b, ds, epochs)
        if a.save:
            a.save.mkdir(parents=True, exist_ok=True); torch.save(got, a.save/name); print(f'saved {m:13} {v:9} {b}', flush=True)
            continue
        want = torch.load(a.against/name, weights_only=True)
        if a.one_step and b != 'loop':
            worst, where = norm_difference(got, want)
            print(f"{'reported':9} {m:13} {v:9} {b:5} max rel norm diff {worst:.1e} {where}", flush=True); continue
        ok, worst = compare(got, want, batched=b != 'loop')
        failed += not ok
        print(f"{'equal' if ok else 'DIFFERENT':9} {m:13} {v:9} {b:5} max rel diff {worst:.2e}", flush=True)
    if a.against: print(f"{failed} of {len(list(cases()))} differ"); sys.exit(int(failed > 0))

if __name__ == '__main__': main()
