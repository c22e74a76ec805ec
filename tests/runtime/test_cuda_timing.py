"""CUDA-event timing of the GPU backends, on a fake of the CUDA runtime API (no GPU here): the events bracket the call
on the binding's stream, are destroyed even when the call fails, and memory / name are read as cuda-python returns them."""

from __future__ import annotations

import types

import pytest

from turbo_edge.runtime.cuda_timing import CudaEvents, binding_stream


class FakeCudart:
    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.events = 0

    def cudaEventCreate(self):
        self.events += 1
        return 0, f"ev{self.events}"

    def cudaEventRecord(self, event, stream):
        self.log.append(("record", event, stream))
        return (0,)

    def cudaEventSynchronize(self, event):
        self.log.append(("sync", event))
        return (0,)

    def cudaEventElapsedTime(self, start, end):
        return 0, 12.5

    def cudaEventDestroy(self, event):
        self.log.append(("destroy", event))
        return (0,)

    def cudaMemGetInfo(self):
        return 0, 3_000, 10_000

    def cudaGetDeviceProperties(self, device):
        return 0, types.SimpleNamespace(name=b"NVIDIA H100 80GB HBM3\x00\x00")


def test_events_bracket_the_call_on_its_stream():
    rt = FakeCudart()
    calls = []
    ms = CudaEvents(rt).time_ms(lambda: calls.append(rt.log[-1]), stream="s1")
    assert ms == 12.5 and calls == [("record", "ev1", "s1")]  # the call ran after the start event
    assert rt.log[1:] == [("record", "ev2", "s1"), ("sync", "ev2"), ("destroy", "ev1"), ("destroy", "ev2")]


def test_events_are_destroyed_when_the_call_fails():
    rt = FakeCudart()

    def boom():
        raise RuntimeError("kernel failed")

    with pytest.raises(RuntimeError, match="kernel failed"):
        CudaEvents(rt).time_ms(boom)
    assert [e for e in rt.log if e[0] == "destroy"] == [("destroy", "ev1"), ("destroy", "ev2")]


def test_memory_name_and_stream():
    timer = CudaEvents(FakeCudart())
    assert timer.memory_used_bytes() == 7_000 and timer.device_name() == "NVIDIA H100 80GB HBM3"
    assert binding_stream(types.SimpleNamespace(handle=types.SimpleNamespace(stream="trt"))) == "trt"
    assert binding_stream(types.SimpleNamespace(handle=object())) == 0 and binding_stream(None) == 0


def test_a_failed_cuda_call_is_an_error():
    rt = FakeCudart()
    rt.cudaMemGetInfo = lambda: (2, 0, 0)
    with pytest.raises(RuntimeError, match="CUDA call failed: 2"):
        CudaEvents(rt).memory_used_bytes()
