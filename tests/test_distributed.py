"""Distributed training, everything that needs no second process: the split plan, the launch checks, the
one-process communicator, data parallelism on one rank, the watchdog, and the cost model.

The 2-rank runs (the split and the replicas against one process, faults) are in test_distributed_mpi.py.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest
from helpers import dev, host, rel_diff
from mpi_scripts import cases

from minialex import distributed
from minialex.distributed import traffic
from minialex.distributed.comm import DistributedError, LocalComm, Watchdog, default_timeout
from minialex.errors import ConfigError
from minialex.layers import Conv2d, Linear, ReLU, Sequential, SoftmaxCrossEntropy
from minialex.models import alexnet


@pytest.fixture(scope="module")
def paper():
    """One ``paper`` AlexNet for the tests that only read its structure (building it draws 61 M weights)."""
    return alexnet("paper")


OPEN_MPI = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}


# -- the split plan --------------------------------------------------------------------------------------------


def test_paper_split_exchanges_exactly_where_the_papers_gpus_communicate(paper):
    plan = distributed.plan_split(paper, 2)
    how = {layer.name: layer.how for layer in plan.layers}
    assert how["conv1"] == how["conv3"] == "filters"
    assert how["conv2"] == how["conv4"] == how["conv5"] == "groups"
    assert how["fc6"] == how["fc7"] == how["fc8"] == "neurons"
    assert [(e.before, e.kind) for e in plan.exchanges] == [
        ("norm1", "halo"),
        ("norm2", "halo"),
        ("conv3", "allgather"),
        ("fc6", "allgather"),
        ("fc7", "allgather"),
        ("fc8", "allgather"),
        ("output", "output"),
    ]
    # Per image, each rank sends: its half of pool2 into conv3 (128·13·13), of pool5 into fc6 (4608), of fc6 and
    # fc7 (2048 each), of the logits (500); 2 boundary channels at norm1 (55×55) and norm2 (27×27).
    forward = 128 * 13 * 13 + 4608 + 2048 + 2048 + 500 + 2 * 55 * 55 + 2 * 27 * 27
    backward = forward - 500  # the logits' gradient is sliced, not sent
    for rank in (0, 1):
        assert plan.elements_per_image(rank) == {"forward": forward, "backward": backward}
    assert plan.bytes_per_step(128, 4) == 128 * 4 * (forward + backward)  # 39.0 MB per step at batch 128
    assert plan.bytes_per_step(1, 4, input_grad=True) - plan.bytes_per_step(1, 4) == 3 * 227 * 227 * 4
    assert plan.input_grad_partial  # each half of conv1 sees the whole image: partial image gradients


def test_mini_split_and_which_variants_qualify():
    plan = distributed.plan_split(alexnet("mini"), 2)
    assert [(e.before, e.kind) for e in plan.exchanges] == [
        ("norm1", "halo"),
        ("norm2", "halo"),
        ("conv3", "allgather"),
        ("fc4", "allgather"),
        ("fc5", "allgather"),
        ("output", "output"),
    ]
    # One column (d2l; torchvision likewise): every ungrouped convolution after conv1 needs a gather.
    gathers = [
        e.before for e in distributed.plan_split(alexnet("d2l", image_size=65), 2).exchanges if e.kind == "allgather"
    ]
    assert gathers == ["conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


def test_per_column_lrn_has_no_halo(paper):
    plan = distributed.plan_split(paper, 2, lrn="per-column")
    assert [e.kind for e in plan.exchanges] == ["allgather"] * 4 + ["output"]


def test_a_grouped_first_layer_is_sliced_not_gathered():
    model = Sequential(("conv1", Conv2d(4, 8, 3, groups=2)), ("relu1", ReLU()))
    plan = distributed.plan_split(model, 2, (4, 5, 5))
    assert [(e.before, e.kind) for e in plan.exchanges] == [("conv1", "slice"), ("output", "output")]
    assert plan.elements_per_image(0, input_grad=True)["backward"] == 2 * 5 * 5  # the other half of the image


@pytest.mark.parametrize(
    ("model", "size", "fragment"),
    [
        (Sequential(("fc", Linear(4, 5))), 2, "fc's output features = 5 cannot be shared evenly by 2 ranks"),
        (Sequential(("conv", Conv2d(6, 6, 3, groups=3))), 2, "conv has groups=3, which 2 ranks cannot share"),
        (Sequential(("fc", Linear(4, 4))), 1, "the number of ranks must be an integer >= 2"),
        (Sequential(("box", Sequential(("fc", Linear(4, 4))))), 2, "no split rule for layer 'box' (Sequential)"),
    ],
)
def test_models_that_cannot_be_split_say_why(model, size, fragment):
    shape = (6, 5, 5) if isinstance(model[0], Conv2d) else (4,)
    with pytest.raises(ConfigError, match="model parallelism") as info:
        distributed.plan_split(model, size, shape)
    assert fragment in str(info.value)


def test_lrn_window_wider_than_a_block_is_refused():
    model = alexnet("mini", widths=(4, 8, 8, 16))  # conv1 has 4 maps: 2 per rank, and LRN's window needs 2 + 2
    assert distributed.plan_split(model, 2).layers[2].how == "halo"
    with pytest.raises(ConfigError, match="reaches past a neighbour's 1 channels"):
        distributed.plan_split(alexnet("mini", widths=(4, 8, 8, 16)), 4)


def test_the_plan_table_names_every_exchange(paper):
    text = distributed.plan_split(paper, 2).table()
    assert "conv3" in text and "allgather of 128×13×13 blocks; backward reduce-scatter: 21,632 + 21,632" in text
    assert "halo of 2+2 channels of 55×55: 6,050 + 6,050 elements" in text


# -- launch checks: clear errors before any work ----------------------------------------------------------------


def test_parallel_without_mpiexec_says_how_to_start_it():
    with pytest.raises(
        ConfigError, match=r"not started by one: run `mpiexec -n 2 minialex train --parallel model"
    ) as info:
        distributed.check_launch("model", environ={})
    assert "\n" not in str(info.value)


def test_launch_info_from_the_common_launchers():
    assert distributed.launch_info(OPEN_MPI) == distributed.LaunchInfo("Open MPI", 1, 2, 1)
    assert distributed.launch_info({"PMI_SIZE": "4", "PMI_RANK": "3"}).size == 4
    assert distributed.launch_info({"PMIX_RANK": "0"}).size is None  # known once MPI starts
    assert distributed.launch_info({"OMPI_COMM_WORLD_SIZE": "two", "OMPI_COMM_WORLD_RANK": "0"}) is None


@pytest.mark.parametrize(
    ("mode", "size", "batch", "fragment"),
    [
        ("model", 3, None, "--parallel model needs exactly 2 ranks (the paper's two columns of kernels), got 3"),
        ("model", 1, None, "needs exactly 2 ranks"),
        ("data", 3, 64, "--batch-size 64 does not split evenly over 3 ranks"),
        ("both", 2, None, "--parallel must be one of data, model, got 'both'"),
    ],
)
def test_unsupported_rank_counts_and_batches_are_refused(mode, size, batch, fragment):
    env = {"OMPI_COMM_WORLD_SIZE": str(size), "OMPI_COMM_WORLD_RANK": "0"}
    with pytest.raises(ConfigError) as info:
        distributed.check_launch(mode, batch, environ=env)
    assert fragment in str(info.value)


def test_batch_message_offers_the_nearest_multiples():
    with pytest.raises(ConfigError, match=r"use a multiple of 3, e.g. 63 or 66"):
        distributed.check_batch(64, 3)
    distributed.check_batch(64, 4)
    distributed.check_batch(7, 7)
    distributed.check_batch(5, 2, mode="model")  # model parallelism gives every rank the whole batch


def test_missing_mpi4py_is_reported_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `import mpi4py` raise ImportError
    with pytest.raises(ConfigError, match=r"--parallel needs mpi4py.*pip install 'minialex\[mpi\]'"):
        distributed.check_launch("data", 8, environ=OPEN_MPI)


def test_launch_checks_pass_under_a_launcher():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'minialex[mpi]')")
    assert distributed.check_launch("model", 32, environ=OPEN_MPI).rank == 1
    assert distributed.check_launch("data", 32, environ=OPEN_MPI).size == 2


def test_collective_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("MINIALEX_COLLECTIVE_TIMEOUT", "12.5")
    assert default_timeout() == 12.5
    monkeypatch.setenv("MINIALEX_COLLECTIVE_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="MINIALEX_COLLECTIVE_TIMEOUT='soon' must be a finite number > 0"):
        default_timeout()
    monkeypatch.delenv("MINIALEX_COLLECTIVE_TIMEOUT")
    assert default_timeout() == distributed.DEFAULT_TIMEOUT


# -- the communicator on one process ---------------------------------------------------------------------------


def test_local_comm_collectives_are_the_identity_and_count_no_traffic():
    comm = LocalComm()
    x = dev(np.arange(6.0).reshape(2, 3))
    assert comm.allreduce(x) is x and host(x).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert host(comm.iallreduce(x).wait()).tolist() == host(x).tolist()
    assert host(comm.allgather(x)).shape == (1, 2, 3)
    assert host(comm.reduce_scatter(comm.allgather(x))).tolist() == host(x).tolist()
    assert host(comm.sendrecv(x, 0, dev(np.zeros((2, 3))), 0)).tolist() == host(x).tolist()
    assert comm.allreduce_scalars([1.5, 2]).tolist() == [1.5, 2.0]
    assert comm.any(True) and not comm.any(False)
    assert comm.allgather_json({"a": [1]}) == [{"a": [1]}]
    comm.check_same({"lr": 0.1}, "lr")
    assert comm.stats.bytes_sent == 0 and comm.stats.ops["allreduce"].calls == 2
    assert comm.is_root and comm.size == 1


def test_collectives_refuse_what_they_cannot_send():
    comm = LocalComm()
    with pytest.raises(DistributedError, match="allreduce: expected a C-contiguous"):
        comm.allreduce(dev(np.zeros((4, 4)))[:, ::2])
    with pytest.raises(DistributedError, match="expected a leading axis of 1"):
        comm.reduce_scatter(dev(np.zeros((2, 3))))
    with pytest.raises(DistributedError, match="give x with dest"):
        comm.sendrecv(dev(np.zeros(2)), None, None, None)


def test_watchdog_fires_once_a_watched_call_outlasts_the_timeout():
    fired = []
    dog = Watchdog(0.2, lambda what, waited: fired.append((what, waited)))
    with dog.watch("quick"):
        pass
    with dog.watch("allreduce (bucket 3)"):
        deadline = time.monotonic() + 5
        while not fired and time.monotonic() < deadline:
            time.sleep(0.05)
    assert fired and fired[0][0] == "allreduce (bucket 3)" and fired[0][1] > 0.2


def test_guard_on_one_rank_lets_the_exception_through():
    with pytest.raises(ValueError, match="boom"), distributed.guard(LocalComm()):
        raise ValueError("boom")


def test_failure_messages_name_the_error():
    from minialex.distributed.launch import failure_message

    assert failure_message(ConfigError("bad --lr")) == "failed: ConfigError: bad --lr; stopping every rank"
    assert "exited with status 2" in failure_message(SystemExit(2))
    assert "interrupted" in failure_message(KeyboardInterrupt())


def test_model_parallel_needs_two_ranks():
    with pytest.raises(ConfigError, match="the number of ranks must be an integer >= 2, got 1"):
        distributed.ModelParallel(alexnet("mini"), LocalComm())


# -- data parallelism on one rank ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", [True, False])
def test_data_parallel_on_one_rank_is_plain_training_bit_for_bit(overlap):
    images, labels = cases.batch(cases.build("mini", np.float64), 11, seed=2)
    plain = cases.build("mini", np.float64, dropout=False)
    cases.epochs(plain, images, labels, 4, 2)
    model = cases.build("mini", np.float64, dropout=False)
    dp = distributed.DataParallel(model, LocalComm(), bucket_bytes=1000, overlap=overlap)
    dp.broadcast_parameters()
    cases.epochs(model, images, labels, 4, 2, dp)
    for name, value in plain.state_dict().items():
        assert np.array_equal(model.state_dict()[name], value), name
    assert len(dp.buckets) > 3 and dp.bytes_per_step == 0


def test_buckets_follow_backward_order_and_keep_big_tensors_alone(paper):
    model = paper
    dp = distributed.DataParallel(model, LocalComm())
    names = [n for b in dp.buckets for n in b.names]
    assert names == list(reversed(list(model.params)))  # every gradient once, the last layer's first
    fc6 = next(b for b in dp.buckets if "fc6.weight" in b.names)
    assert fc6.names == ["fc6.weight"]  # 151 MB: reduced in place, never copied into a bucket
    assert all(b.nbytes <= distributed.DEFAULT_BUCKET_BYTES or len(b.names) == 1 for b in dp.buckets)


def test_the_shards_of_a_batch_are_the_batch():
    for n in range(0, 20):
        for size in (1, 2, 3, 4, 7):
            bounds = [distributed.shard_bounds(n, r, size) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(bounds[r][1] == bounds[r + 1][0] for r in range(size - 1))
            assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_rank_seeds_differ_and_rank_zero_keeps_the_seed():
    seeds = [distributed.rank_seed(42, r) for r in range(8)]
    assert seeds[0] == 42 and len(set(seeds)) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert seeds == [distributed.rank_seed(42, r) for r in range(8)]


def _two_images() -> tuple:
    """The mini model, 2 images, and the loss's dL/dlogits after a forward pass (its shard mean)."""
    model = cases.build("mini", np.float64, dropout=False)
    x, y = cases.batch(model, 2)
    loss = SoftmaxCrossEntropy()
    loss(model.forward(dev(x)), dev(y))
    return model, loss.backward()


def test_an_empty_shard_contributes_zero_gradients():
    model, dy = _two_images()
    model.backward(dy, need_input_grad=False)
    assert any(float(np.abs(host(g)).max()) > 0 for g in model.grads.values())
    dp = distributed.DataParallel(model, LocalComm())
    assert dp.backward(None, 0, 4) is None
    assert all(float(np.abs(host(g)).max()) == 0 for g in model.grads.values())
    with pytest.raises(ConfigError, match=r"local_count must be an integer in \[0, 1\], got 2"):
        dp.backward(None, 2, 1)


def test_a_shard_counts_for_its_share_of_the_batch():
    """The gradient of a shard of 2 images out of a batch of 8 is 2/8 of the shard-mean gradient."""
    model, dy = _two_images()
    model.backward(dy, need_input_grad=False)
    shard_mean = {k: host(v).copy() for k, v in model.grads.items()}
    distributed.DataParallel(model, LocalComm()).backward(dy, 2, 8)
    for name, grad in model.grads.items():
        assert rel_diff(grad, shard_mean[name] * 0.25) < 1e-15, name


# -- the cost model --------------------------------------------------------------------------------------------


def test_allreduce_volume_and_ring_times_for_the_paper_model(paper):
    nbytes = paper.num_params() * 4
    assert nbytes == 243_860_896  # 60,965,224 float32 parameters
    assert traffic.allreduce_bytes(nbytes, 2) == nbytes
    assert traffic.allreduce_bytes(nbytes, 8) == math.ceil(1.75 * nbytes)
    assert traffic.ring_allreduce_seconds(nbytes, 2, 10, latency_s=0) == pytest.approx(nbytes / 1.25e9)
    assert traffic.ring_allreduce_seconds(nbytes, 8, 100, latency_s=0) == pytest.approx(1.75 * nbytes / 12.5e9)
    assert traffic.ring_allreduce_seconds(nbytes, 1, 10) == 0.0


def test_the_batch_that_hides_the_allreduce(paper):
    # 1 s of allreduce, 3 GFLOP per image, a 1 TFLOP/s device: backward of b images lasts b·2 ms → b ≥ 500.
    assert traffic.hiding_batch(1.0, 3e9, 1e12) == 500
    flops = traffic.train_flops_per_image(paper)
    assert flops == 3 * 2 * 724_406_816  # forward, dW and dX products of the paper model's 724 M multiply-adds


def test_split_cost_grows_with_the_batch_at_a_constant_ratio(paper):
    plan = distributed.plan_split(paper, 2)
    flops = traffic.train_flops_per_image(paper)
    small, large = (traffic.split_cost(plan, b, 4, flops, 1e12, 10, latency_s=0) for b in (32, 128))
    assert large.bytes_sent == 4 * small.bytes_sent
    assert large.ratio == pytest.approx(small.ratio)
