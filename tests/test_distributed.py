"Two gloo processes against one process on the same global batch (the torchrun set-up on one CPU node)."
import torch
from tc2_nb.distributed import run_workers, _check_gather_grad

def test_gather_with_grad_and_global_stats_match_single_process():
    torch.manual_seed(0)
    xg = torch.randn(8, 4)
    res = run_workers(_check_gather_grad, 2, (xg,))
    xs = xg.clone().requires_grad_()
    (xs @ xs.T).logsumexp(1).mean().backward()
    torch.testing.assert_close(torch.cat([r[0] for r in res]), xs.grad, atol=1e-5, rtol=0)
    for _, mean, cov in res:
        torch.testing.assert_close(mean, xg.mean(0), atol=1e-5, rtol=0)
        torch.testing.assert_close(cov, torch.cov(xg.T), atol=1e-4, rtol=0)
