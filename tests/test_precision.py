"""`--precision auto`: mixed bfloat16 only where the hardware computes bfloat16 natively, float32 elsewhere, decided
from what the platform reports (real flag sets of both kinds below), recorded by every run."""

from __future__ import annotations

import json

import pytest

from capsnet.precision import AUTO, Hardware, decide, read_cpu_flags

# /proc/cpuinfo "flags" of real machines (trimmed of nothing that matters here; kept whole where short enough).
ZEN4_EPYC = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht "
             "syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid "
             "extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
             "tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a "
             "misalignsse 3dnowprefetch osvw topoext vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid "
             "avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl "
             "xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni "
             "vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm")
ZEN2_EPYC = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht "
             "syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid "
             "tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c "
             "rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd "
             "ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 rdseed adx smap clflushopt clwb sha_ni "
             "xsaveopt xsavec xgetbv1 clzero xsaveerptr arat npt nrip_save umip rdpid")
# Ice Lake server: AVX-512 everywhere, but no bfloat16 instructions -- the trap a check for "avx512" falls into.
ICELAKE_XEON = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 "
                "ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid "
                "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
                "tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch invpcid_single "
                "ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f "
                "avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt "
                "xsavec xgetbv1 xsaves wbnoinvd arat avx512vbmi pku ospke avx512_vbmi2 gfni vaes vpclmulqdq "
                "avx512_vnni avx512_bitalg tme avx512_vpopcntdq rdpid md_clear flush_l1d arch_capabilities")
# Sapphire Rapids: AMX tiles with bfloat16.
SAPPHIRE_RAPIDS_EXTRA = " avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16"
# arm64 /proc/cpuinfo "Features": AWS Graviton3 (Neoverse V1, BF16) and Graviton2 (Neoverse N1, none).
GRAVITON3 = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
             "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm "
             "svebf16 i8mm bf16 dgh rng")
GRAVITON2 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs"


def cpu(machine: str, flags: str) -> Hardware:
    return Hardware(machine, frozenset(flags.split()))


@pytest.mark.parametrize(("hardware", "expected"), [
    (cpu("x86_64", ZEN4_EPYC), "mixed_bfloat16"),
    (cpu("x86_64", ICELAKE_XEON + SAPPHIRE_RAPIDS_EXTRA), "mixed_bfloat16"),
    (cpu("x86_64", ZEN2_EPYC), "float32"),
    (cpu("x86_64", ICELAKE_XEON), "float32"),
    (cpu("aarch64", GRAVITON3), "mixed_bfloat16"),
    (cpu("arm64", GRAVITON3), "mixed_bfloat16"),
    (cpu("aarch64", GRAVITON2), "float32"),
    (cpu("riscv64", "bf16 avx512_bf16"), "float32"),  # names of other architectures mean nothing here
])
def test_auto_follows_the_cpu(hardware, expected):
    choice = decide(AUTO, hardware)
    assert choice.precision == expected
    assert choice.requested == AUTO
    if expected == "float32":
        assert choice.describe() == "auto → float32: this CPU has no native bfloat16"
    else:
        assert "natively" in choice.reason


@pytest.mark.parametrize(("capabilities", "expected"), [
    (((7, 0),), "float32"),  # V100
    (((7, 5),), "float32"),  # T4
    (((8, 0),), "mixed_bfloat16"),  # A100
    (((8, 6),), "mixed_bfloat16"),  # RTX 30xx, A10
    (((9, 0),), "mixed_bfloat16"),  # H100, H200
    (((9, 0), (7, 5)), "float32"),  # mixed GPUs train in step: the oldest decides
])
def test_auto_follows_the_gpus_whatever_the_cpu(capabilities, expected):
    # A bfloat16 CPU does not matter when the training runs on the GPUs, nor does a CPU without it.
    for flags in (ZEN4_EPYC, ZEN2_EPYC):
        choice = decide(AUTO, Hardware("x86_64", frozenset(flags.split()), capabilities))
        assert choice.precision == expected
        assert "compute capability" in choice.reason


def test_an_explicit_precision_wins():
    for precision in ("float32", "mixed_bfloat16"):
        gpu = Hardware("x86_64", frozenset(), ((9, 0),))
        for hardware in (cpu("x86_64", ZEN2_EPYC), cpu("x86_64", ZEN4_EPYC), gpu):
            choice = decide(precision, hardware)
            assert (choice.precision, choice.requested) == (precision, precision)
            assert choice.describe() == f"{precision} (chosen explicitly)"
    with pytest.raises(ValueError, match="unknown precision"):
        decide("float16", cpu("x86_64", ZEN4_EPYC))


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {ZEN2_EPYC}\n\nprocessor\t: 1\n")
    arm = tmp_path / "arm"
    arm.write_text(f"processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: {GRAVITON3}\nCPU implementer\t: 0x41\n")
    assert "avx2" in read_cpu_flags(x86) and "avx512_bf16" not in read_cpu_flags(x86)
    assert "bf16" in read_cpu_flags(arm)
    assert decide(AUTO, Hardware("aarch64", read_cpu_flags(arm))).precision == "mixed_bfloat16"


def test_bench_times_float32_alone_where_bfloat16_is_emulated(monkeypatch):
    from capsnet.precision import Precision
    from capsnet.tools import bench

    monkeypatch.setattr(bench, "resolve", lambda requested: Precision(AUTO, "float32", "this CPU has no native "
                                                                                       "bfloat16"))
    assert bench.expand_precisions(["auto"]) == ["float32"]
    assert bench.expand_precisions(["mixed_bfloat16", "auto"]) == ["mixed_bfloat16", "float32"]
    monkeypatch.setattr(bench, "resolve", lambda requested: Precision(AUTO, "mixed_bfloat16", "native"))
    assert bench.expand_precisions(["auto"]) == ["mixed_bfloat16", "float32"]


@pytest.mark.slow
def test_a_run_records_what_auto_chose_and_why(mnist, tmp_path):
    from capsnet.config import ModelConfig, TrainConfig
    from capsnet.data import Dataset
    from capsnet.precision import resolve
    from capsnet.rundir import RunDir
    from capsnet.train import train

    data = Dataset(mnist.x_train[:200], mnist.y_train[:200], mnist.x_test[:100], mnist.y_test[:100], "test")
    tiny = ModelConfig(conv_filters=16, primary_channels=4, decoder_units=(32, 64))
    config = TrainConfig(epochs=1, batch_size=100, model=tiny)
    assert config.precision == AUTO  # the default everywhere starts here
    net = train(config, tmp_path / "run", data=data, verbose=0)
    run = RunDir(tmp_path / "run")
    expected = resolve(AUTO)
    recorded = json.loads(run.config_file.read_text())
    assert recorded["precision"] == AUTO
    assert recorded["precision_used"] == expected.to_dict()
    assert run.read_raw_status()["precision"] == expected.to_dict()
    assert run.read_raw_status()["sessions"][-1]["precision"]["precision"] == expected.precision
    # The network computed in what was chosen.
    conv = net.eval.get_layer("conv1")
    assert conv.dtype_policy.name == expected.precision
