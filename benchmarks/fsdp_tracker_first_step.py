"""What PyTorch's FSDPMemTracker puts under "OptState" on a first and on a steady-state AdamW step.

The issue's 256-1024-256 MLP, ``fully_shard`` per Linear and the root, 8 fake ranks, under
FakeTensorMode. Run it in a fresh process: DTensor's sharding propagation caches its answers for
the whole process, and the first step's figure comes from the fake tensors of global shapes that
propagation makes before its cache holds them (see tests/test_parallel_memory.py).

    python benchmarks/fsdp_tracker_first_step.py
"""
import torch
import torch.distributed as dist
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.testing._internal.distributed.fake_pg import FakeStore


def main() -> None:
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=8)
    try:
        mesh = init_device_mesh("cpu", (8,))
        with FakeTensorMode():
            model = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 256))
            for layer in (model[0], model[2]):
                fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            opt = torch.optim.AdamW(model.parameters())
            x = torch.randn(4, 256)
            for step in ("first", "steady-state"):
                opt.zero_grad(set_to_none=True)
                model(x).sum().backward()
                tracker = FSDPMemTracker(model, opt)
                with tracker:
                    opt.step()
                peak, current = (next(iter(tracker.get_tracker_snapshot(k).values())) for k in ("peak", "current"))
                opt_key = next(k for k in peak if str(k).endswith("OPT"))
                print(f"{step} step: OptState {peak[opt_key]:,} bytes at the peak, {current[opt_key]:,} after the step")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
