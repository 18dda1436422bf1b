"""compile=True with TC² compiles stage 1's objective (the calibrator's forward, the K task losses, L_tc2): the same
numbers as eager within float tolerance, for the loop and the batched task path. Slow on the CPU (inductor builds C++
kernels once: about a minute), so one small case."""
import copy, warnings
import pytest, torch
from test_task_batching import _setup, STAGE1_EPS, _close, FLOOR, _grad_norm
from tc2_nb.bilevel import Stage1, TC2Settings, bilevel_step
from tc2_nb.core import ConfigError

torch.set_num_threads(1)


def _steps(cfg, m, aug, x, cal, compiled, batching, steps=2):
    s1 = Stage1(cal, cfg.alphas, mode=cfg.stage1, query_loss=cfg.query_loss, compiled=compiled)
    for g in s1.opt_s.param_groups + s1.opt_q.param_groups: g['eps'] = STAGE1_EPS
    gen = torch.Generator().manual_seed(2)
    for _ in range(steps):
        for p in m.parameters(): p.grad = None
        terms, _ = bilevel_step(m, x, aug, gen, TC2Settings.from_config(cfg), s1, task_batching=batching)
    return m, cal, terms


@pytest.mark.parametrize('batching', ['loop', 'vmap'])
def test_compiled_stage1_equals_eager(batching):
    cfg, m0, aug, x, cal0 = _setup('simclr', 'TC2')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        eager = _steps(cfg, copy.deepcopy(m0), aug, x, copy.deepcopy(cal0), False, batching)
        torch._dynamo.reset(); torch._dynamo.utils.counters.clear()
        comp = _steps(cfg, copy.deepcopy(m0), aug, x, copy.deepcopy(cal0), True, batching)
    assert torch._dynamo.utils.counters['stats']['unique_graphs'] >= 1     # something was compiled, not all eager
    floor = FLOOR * _grad_norm(eager[0])
    for (n, pe), pc in zip(eager[0].named_parameters(), comp[0].parameters()): _close(pc.grad, pe.grad, f"grad {n}", floor)
    cfloor = FLOOR * torch.stack([p.double().norm() for p in eager[1].parameters()]).norm().item()
    for (n, pe), pc in zip(eager[1].named_parameters(), comp[1].parameters()): _close(pc, pe, f"calibrator {n}", cfloor)
    for k in eager[2]: _close(comp[2][k], eager[2][k], f"term {k}")


def test_compile_refuses_maml():
    cfg, m0, aug, x, cal0 = _setup('simclr', 'TC2')
    with pytest.raises(ConfigError, match="sequential' only"): Stage1(cal0, mode='maml', compiled=True)
