"""task_batching='vmap' (the K tasks of stages 1 and 2 in one torch.func.vmap each) equals the per-task loop: every
method of METHODS x the inner-step variants, one bilevel_step from identical states. Methods that cannot be batched
(MAE; a module writing a buffer in place, as a MoCo-like queue would if it were written inside the step) must warn
once and still give the loop's numbers. Second order keeps the loop."""
import copy, math, os, warnings
import pytest, torch
from tc2_nb.bilevel import Stage1, TC2Settings, bilevel_step, norm_buffer_names, task_runner
from tc2_nb.task_batching import BatchedWriteError
from tc2_nb.core import ConfigError
from tc2_nb.methods import METHODS
from tc2_nb.train_config import TrainConfig, uses_inner_step, VARIANTS
from tc2_nb.trainer import build_method, build_calibrator, representation_dim
from tc2_nb.views import make_augment

torch.set_num_threads(1)
SIZE = 16
SMALL = dict(simclr=dict(proj_hidden_dim=16, proj_output_dim=16), moco=dict(proj_hidden_dim=16, proj_output_dim=16, queue_size=16),
             byol=dict(proj_hidden_dim=16, proj_output_dim=16, pred_hidden_dim=16),
             simsiam=dict(proj_hidden_dim=16, proj_output_dim=16, pred_hidden_dim=8),
             barlow_twins=dict(proj_hidden_dim=16, proj_output_dim=16), swav=dict(proj_hidden_dim=16, proj_output_dim=16, n_prototypes=10),
             vicreg=dict(proj_hidden_dim=16, proj_output_dim=16), mae=dict(decoder_dim=16, decoder_depth=1, decoder_heads=2))
INNER_VARIANTS = [v for v in VARIANTS if uses_inner_step(v)]                  # T, TC2, -Lv, -Lw
FALLS_BACK = {'mae'}                                                           # data-dependent masking: the loop
# Compared by relative norm, ‖vmap − loop‖ ≤ RTOL·max(‖loop‖, floor); the floor (FLOOR of the whole model's gradient
# norm) is for tensors whose gradient is zero up to rounding (a bias right before BatchNorm), which both paths give as
# noise of the other gradients. Measured (TC2_MEASURED=1 prints it): worst 3e-5 per tensor, typically 2e-6..1e-5:
# float32 rounding summed in another order, amplified by BatchNorm over 8-image tasks; a wrong statistic or a missed
# task gives O(1). RTOL is ~100x the worst measured, so that the test holds on any x86 CPU.
RTOL, FLOOR = 3e-3, 1e-2
N_IMAGES = 32
# Stage 1's Adam turns a zero gradient's rounding noise into a ±α step (the first step is ≈ α·sign(g) once |g| ≫ eps):
# with variant -Lw, f_w's output bias has a zero gradient (restore_norm='batch' removes a shift), and its sign is
# rounding, in the loop too (another CPU would flip it). An eps of 0.1 makes a noise-level gradient move its
# parameter by ≪ α while a real one (here ~1) still takes a nearly normalised step.
STAGE1_EPS = 1e-1


def _cfg(method, variant):
    bb = (dict(backbone='vit_tiny', backbone_kwargs=dict(depth=1, dim=16, heads=2, patch=4)) if method == 'mae'
          else dict(backbone='small_cnn', backbone_kwargs=dict(widths=(4, 8, 8))))
    return TrainConfig(method=method, method_kwargs=SMALL[method], variant=variant, batch_size=N_IMAGES, n_tasks=4, n_factors=4,
                       device='cpu', dataset='fashion_mnist', **bb)


def _setup(method, variant):
    cfg = _cfg(method, variant)
    torch.manual_seed(0)
    m = build_method(cfg, 1, SIZE).train()
    aug = make_augment(m.recipe, SIZE, 1)
    x = (torch.rand(N_IMAGES, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    cal = build_calibrator(cfg, representation_dim(m, x, aug), method=m) if variant != 'T' else None
    return cfg, m, aug, x, cal


def _run(cfg, m, aug, x, cal, batching, second_order=False):
    s1 = None if cal is None else Stage1(cal, cfg.alphas, mode=cfg.stage1, query_loss=cfg.query_loss)
    if s1 is not None:
        for g in s1.opt_s.param_groups + s1.opt_q.param_groups: g['eps'] = STAGE1_EPS
    g = torch.Generator().manual_seed(2)
    terms, grads = bilevel_step(m, x, aug, g, TC2Settings.from_config(cfg), s1, probe=True, second_order=second_order,
                                task_batching=batching)
    return terms, grads


MEASURED = []
def _close(a, b, what, floor=0.0):
    err, ref = (a.double() - b.double()).norm().item(), b.double().norm().item()
    MEASURED.append(err / max(ref, floor, 1e-30))
    assert err <= RTOL * max(ref, floor) + 1e-30, f"{what}: ‖vmap − loop‖ = {err:.3g}, ‖loop‖ = {ref:.3g}, floor {floor:.3g}"


def _grad_norm(m): return torch.stack([p.grad.norm() for p in m.parameters() if p.grad is not None]).norm().item()


def _both(cfg, m0, aug, x, cal0, **kw):
    "Loop and vmap runs of one step from deep copies: per path (method, calibrator, terms, probe rows, task_batching warnings)."
    runs = {}
    for batching in ('loop', 'vmap'):
        m, cal = copy.deepcopy(m0), copy.deepcopy(cal0)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            terms, grads = _run(cfg, m, aug, x, cal, batching, **kw)
        runs[batching] = m, cal, terms, grads, [str(x.message) for x in w if 'task_batching' in str(x.message)]
    return runs['loop'], runs['vmap']


def _check_equal(loop, vmap, what, exact=False):
    (ml, cl, tl, gl, _), (mv, cv, tv, gv, _) = loop, vmap
    close = (lambda a, b, w, floor=0.0: torch.testing.assert_close(a, b, rtol=0, atol=0, msg=w)) if exact else _close
    floor = FLOOR * _grad_norm(ml)
    for (n, pl), pv in zip(ml.named_parameters(), mv.parameters()):
        if pl.grad is None: assert pv.grad is None, n; continue
        close(pv.grad, pl.grad, f"{what} grad {n}", floor)
    assert set(tv) == set(tl)
    for k in tl: close(tv[k], tl[k], f"{what} term {k}")
    close(gv, gl, f"{what} probe", floor)
    bv = dict(mv.named_buffers())
    # A running mean can be zero up to rounding (a layer whose input is centred: simsiam's predictor.1, 1.4e-8, differed
    # by 2e-8 under avx2 with 2 threads): buffers are held to FLOOR of the model's whole buffer norm, as gradients are.
    bfloor = FLOOR * torch.stack([b.double().norm() for b in ml.buffers() if b.is_floating_point()]).norm().item()
    for n, b in ml.named_buffers():                                           # running statistics, queues, counters
        if b.is_floating_point(): close(bv[n], b, f"{what} buffer {n}", bfloor)
        else: assert torch.equal(bv[n], b), f"{what} buffer {n}"
    if cl is not None:                                                        # stage 1's update of f_v, f_w
        # with the residual start (the default) a last layer starts at zero and may barely move (f_w's bias under -Lw:
        # 1.7e-9): like buffers and gradients, calibrator tensors are held to FLOOR of the calibrator's whole norm
        cfloor = FLOOR * torch.stack([p.double().norm() for p in cl.parameters()]).norm().item()
        for (n, pl), pv in zip(cl.named_parameters(), cv.parameters()): close(pv, pl, f"{what} calibrator {n}", cfloor)


@pytest.mark.parametrize('method', sorted(METHODS))
@pytest.mark.parametrize('variant', INNER_VARIANTS)
def test_vmap_equals_loop(method, variant):
    MEASURED.clear()
    cfg, m0, aug, x, cal0 = _setup(method, variant)
    loop, vmap = _both(cfg, m0, aug, x, cal0)
    assert loop[-1] == []
    assert len(vmap[-1]) == (1 if method in FALLS_BACK else 0), vmap[-1]
    assert norm_buffer_names(m0) or method == 'mae'                            # MAE's ViT has LayerNorm only
    _check_equal(loop, vmap, f"{method} {variant}", exact=method in FALLS_BACK)
    if os.environ.get('TC2_MEASURED') and MEASURED: print(f"\n{method} {variant}: worst relative error {max(MEASURED):.2e}")


@pytest.mark.parametrize('method', ['simclr', 'byol'])
def test_second_order_keeps_the_loop(method):
    "second_order=True runs the loop whatever task_batching says: the same numbers bit for bit, no warning."
    cfg, m0, aug, x, cal0 = _setup(method, 'TC2')
    loop, vmap = _both(cfg, m0, aug, x, cal0, second_order=True)
    assert loop[-1] == vmap[-1] == []
    _check_equal(loop, vmap, f"{method} TC2 2nd", exact=True)


def _writes_buffers(m, kind):
    "The method `m` with a buffer written in place by each embed: a counter (an unbatched write, which vmap would make once, not per task) or an EMA of the embeddings (a batched value into an unbatched buffer, which vmap refuses)."
    base = type(m)
    class Counting(base):
        def embed(self, views):
            self.n_embeds.add_(1); return super().embed(views)
    class Averaging(base):
        def embed(self, views):
            z = super().embed(views)
            with torch.no_grad(): self.z_ema.mul_(0.9).add_(0.1 * z.mean())
            return z
    m.__class__ = dict(counter=Counting, ema=Averaging)[kind]
    m.register_buffer('n_embeds', torch.zeros((), dtype=torch.long)); m.register_buffer('z_ema', torch.zeros(()))
    return m


@pytest.mark.parametrize('kind', ['counter', 'ema'])
@pytest.mark.parametrize('variant', ['T', 'TC2'])
def test_inplace_buffer_writes_fall_back(kind, variant):
    "A module writing its buffers under vmap falls back to the loop with one warning and the loop's exact numbers."
    cfg, m0, aug, x, cal0 = _setup('simclr', variant)
    loop, vmap = _both(cfg, _writes_buffers(m0, kind), aug, x, cal0)
    assert loop[-1] == [] and len(vmap[-1]) == 1 and 'cannot be batched' in vmap[-1][0], vmap[-1]
    _check_equal(loop, vmap, f"{kind} {variant}", exact=True)
    assert int(loop[0].n_embeds) > 0 if kind == 'counter' else loop[0].z_ema.item() != 0


def test_layers_run_as_one_grouped_pass():
    "The shipped methods' layers pass the runner's one check against vmap: the grouped pass runs them (08bb_grouped)."
    for method in ('simclr', 'byol', 'swav'):
        cfg, m0, aug, x, cal0 = _setup(method, 'TC2')
        loop, vmap = _both(cfg, m0, aug, x, cal0)
        assert vmap[-1] == [] and task_runner(vmap[0], 'vmap').grouped is True, (method, vmap[-1])


def test_grouped_pass_is_checked_against_vmap():
    "A method whose own code mixes z's last dim (which the grouped layout shares among the tasks) keeps vmap for its layers: one warning, the loop's numbers."
    cfg, m0, aug, x, cal0 = _setup('simclr', 'T')
    class Centred(type(m0)):
        def embed(self, views):
            z = super().embed(views)
            return z - z.mean(-1, keepdim=True)
    m0.__class__ = Centred
    loop, vmap = _both(cfg, m0, aug, x, cal0)
    assert loop[-1] == [] and len(vmap[-1]) == 1 and 'not as one grouped pass' in vmap[-1][0], vmap[-1]
    assert 'differs from vmap' in task_runner(vmap[0], 'vmap').grouped
    _check_equal(loop, vmap, 'centred T')


def test_moco_queue_is_read_only_in_the_step():
    "MoCo's queue is written by after_step only, outside the step: it is batched (no warning) and left unchanged."
    cfg, m0, aug, x, cal0 = _setup('moco', 'TC2')
    q0 = m0.queue.clone()
    loop, vmap = _both(cfg, m0, aug, x, cal0)
    assert vmap[-1] == []
    assert torch.equal(vmap[0].queue, q0) and torch.equal(loop[0].queue, q0)


def test_fallback_warns_once_and_sticks():
    cfg, m, aug, x, cal = _setup('mae', 'T')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        for _ in range(2): _run(cfg, m, aug, x, cal, 'vmap')
    assert sum('task_batching' in str(x.message) for x in w) == 1


def test_unknown_task_batching_fails_before_compute():
    with pytest.raises(ConfigError, match='task_batching'): TrainConfig(task_batching='batched').validate()
    cfg, m, aug, x, cal = _setup('simclr', 'T')
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(ConfigError, match='task_batching'): _run(cfg, m, aug, x, cal, 'vamp')
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k])


def test_a_write_after_the_first_step_is_an_error():
    "A module that starts writing its buffers under vmap after a clean first step cannot be undone: an error, not wrong numbers."
    cfg, m, aug, x, cal = _setup('simclr', 'T')
    _run(cfg, m, aug, x, cal, 'vmap')                                          # clean: batched, checked
    assert task_runner(m, 'vmap').checked                                   # the runner's record, not the module's
    _writes_buffers(m, 'counter')
    with pytest.raises(BatchedWriteError, match='after its first step'): _run(cfg, m, aug, x, cal, 'vmap')


@pytest.mark.parametrize('method', sorted(METHODS))
def test_trainer_runs_batched(method):
    "The trainer with task_batching='vmap': two TC² steps, finite, the first step's logged loss the loop's."
    from test_trainer import _cfg as trainer_cfg, DS
    from tc2_nb.trainer import pretrain
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        runs = {b: pretrain(trainer_cfg(method, 'TC2', max_steps=2, task_batching=b), DS) for b in ('loop', 'vmap')}
    loss = {b: list(r.log.loss) for b, r in runs.items()}
    assert runs['vmap'].steps == 2 and all(math.isfinite(v) for v in loss['vmap'])
    assert abs(loss['vmap'][0] - loss['loop'][0]) <= RTOL * abs(loss['loop'][0]), loss


HOST_READS = ('tolist', 'item', '__bool__', '__float__', '__int__', '__index__')

@pytest.mark.parametrize('method', sorted(set(METHODS) - FALLS_BACK))
def test_batched_step_reads_nothing_back(method, monkeypatch):
    """A batched TC² step after the first (which decides, once, what the runner caches) reads no tensor's value on the
    host: on a GPU each such read is a synchronisation that stalls the queue. The CPU catches them by wrapping every
    tensor method that reads a value; the augmentation takes its sync-free path, as on CUDA."""
    cfg, m, aug, x, cal = _setup(method, 'TC2')
    aug.sync_free = True
    s1 = Stage1(cal, cfg.alphas, mode=cfg.stage1, query_loss=cfg.query_loss)
    g, s = torch.Generator().manual_seed(2), TC2Settings.from_config(cfg)
    runner = task_runner(m, 'vmap')
    bilevel_step(m, x, aug, g, s, s1, runner=runner, task_batching='vmap')
    assert runner.batched and runner.failed is None
    reads = []
    for name in HOST_READS:
        def trap(self, *a, _name=name, _orig=getattr(torch.Tensor, name), **k):
            reads.append(_name); return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, trap)
    bilevel_step(m, x, aug, g, s, s1, runner=runner, task_batching='vmap')
    monkeypatch.undo()
    assert reads == [], f"{method}: host reads in a batched step: {reads}"
