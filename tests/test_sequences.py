"""Signal equations of the phantom's pulse sequences (gan_mri.data.sequences), against hand-computed
values and a pulse-by-pulse MPRAGE simulation; the contrasts of the default protocols; protocol jitter."""

import dataclasses

import numpy as np
import pytest

from gan_mri.data.sequences import (
    MPRAGE,
    SEQUENCES,
    T1W_SEQUENCES,
    T2W_SEQUENCES,
    TISSUES,
    SpinEcho,
    TurboSpinEcho,
    jitter_timings,
    sequence,
)

T1, T2, PD = (np.array(values) for values in zip(*TISSUES.values()))


def _signals(protocol) -> dict:
    """Tissue name -> signal of ``protocol``."""
    return dict(zip(TISSUES, protocol.signal(T1, T2, PD)))


def _mprage_by_pulses(protocol: MPRAGE, t1, t2, pd, inversions: int = 40) -> np.ndarray:
    """MPRAGE followed pulse by pulse: inversion, recovery to the train, ``readouts`` pulses ``echo_spacing``
    apart (the centre echo is the pulse ``readouts // 2`` into the train, at TI), recovery to the next
    inversion; repeated ``inversions`` times from full magnetization. Written independently of the library's
    closed form."""
    t1, t2, pd = (np.asarray(v, dtype=np.float64) for v in (t1, t2, pd))
    flip = np.deg2rad(protocol.flip)
    train = protocol.readouts * protocol.echo_spacing
    before = protocol.TI - train / 2
    after = protocol.TR - protocol.TI - train / 2

    def recover(mz, time):
        return 1.0 - (1.0 - mz) * np.exp(-time / t1)

    mz = np.ones_like(t1)
    centre = None
    for _ in range(inversions):
        mz = recover(-mz, before)
        for pulse in range(protocol.readouts):
            if pulse == protocol.readouts // 2:
                centre = mz.copy()  # longitudinal magnetization the centre echo's pulse tips
            mz = recover(mz * np.cos(flip), protocol.echo_spacing)
        mz = recover(mz, after)
    return pd * np.sin(flip) * np.abs(centre) * np.exp(-protocol.TE / t2)


# ------------------------------------------------------------------------------- spin echo
def test_spin_echo_matches_hand_computed_values():
    # WM at TR 500 / TE 10: 0.69 (1 - e^(-500/830)) e^(-10/80) = 0.69 x 0.452519 x 0.882497 = 0.275543
    assert SpinEcho(TR=500.0, TE=10.0).signal(830.0, 80.0, 0.69) == pytest.approx(0.2755432, rel=1e-6)
    # CSF at TR 4000 / TE 100: 1.0 (1 - e^(-1)) e^(-0.05) = 0.632121 x 0.951229 = 0.601292
    assert SpinEcho(TR=4000.0, TE=100.0).signal(4000.0, 2000.0, 1.0) == pytest.approx(0.6012917, rel=1e-6)
    # TSE uses the same equation at its effective TE: GM at TR 4000 / TE 80: 0.8 x 0.950575 x 0.483287 = 0.367478
    assert TurboSpinEcho(TR=4000.0, TE=80.0).signal(1330.0, 110.0, 0.8) == pytest.approx(0.3674775, rel=1e-6)


def test_spin_echo_is_vectorised_over_tissues():
    protocol = SpinEcho(TR=2000.0, TE=50.0)
    expected = PD * (1.0 - np.exp(-2000.0 / T1)) * np.exp(-50.0 / T2)
    np.testing.assert_allclose(protocol.signal(T1, T2, PD), expected, rtol=1e-12)
    assert protocol.signal(T1, T2, PD).shape == (len(TISSUES),)


def test_spin_echo_limits():
    # Long TR, zero TE: the signal is the proton density; TR -> 0: no signal.
    assert SpinEcho(TR=1e7, TE=0.0).signal(1000.0, 100.0, 0.7) == pytest.approx(0.7, rel=1e-9)
    assert SpinEcho(TR=1e-6, TE=10.0).signal(1000.0, 100.0, 0.7) == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------- MPRAGE
@pytest.mark.parametrize(
    "protocol",
    [
        SEQUENCES["T1w-mprage"],
        MPRAGE(TR=2000.0, TI=900.0, flip=8.0, echo_spacing=6.0, readouts=160, TE=2.5),
        MPRAGE(TR=3000.0, TI=1200.0, flip=15.0, echo_spacing=8.0, readouts=121, TE=4.0),  # odd train
    ],
    ids=["default", "adni-like", "odd-readouts"],
)
def test_mprage_signal_matches_a_pulse_by_pulse_simulation(protocol):
    brute_force = _mprage_by_pulses(protocol, T1, T2, PD)
    np.testing.assert_allclose(protocol.signal(T1, T2, PD), brute_force, rtol=1e-6)


def test_mprage_signal_is_in_steady_state_after_its_default_cycles():
    protocol = SEQUENCES["T1w-mprage"]
    np.testing.assert_allclose(protocol.signal(T1, T2, PD), protocol.signal(T1, T2, PD, cycles=60), rtol=1e-6)
    # One inversion is not yet steady state for CSF (T1 4 s against TR 2.3 s): the cycles matter.
    first = protocol.signal(T1, T2, PD, cycles=1)[0]
    assert abs(first - protocol.signal(T1, T2, PD)[0]) > 1e-3 * protocol.signal(T1, T2, PD)[0]


@pytest.mark.parametrize(
    "kwargs",
    [dict(TR=2300.0, TI=500.0, flip=10.0), dict(TR=1500.0, TI=1100.0, flip=10.0)],
    ids=["train-before-inversion", "train-after-next-inversion"],
)
def test_mprage_whose_readout_train_does_not_fit_is_refused(kwargs):
    # 176 readouts x 7 ms = 1232 ms: half of it (616 ms) must fit before TI and after it, before TR.
    with pytest.raises(ValueError, match=r"MPRAGE: expected the readout train \(176 x 7.0 ms\) to fit") as info:
        MPRAGE(**kwargs)
    assert f"TR {kwargs['TR']}, TI {kwargs['TI']}" in str(info.value)


# ------------------------------------------------------------------------------- default contrasts
def test_default_t1w_mprage_contrast():
    signal = _signals(sequence("T1w", "mprage"))
    # Measured: CSF 0.0109 < GM 0.0280 < WM 0.0371; fat 0.0465 (brightest); bone 0.00026.
    assert signal["CSF"] < signal["GM"] < signal["WM"]
    assert signal["fat"] == max(signal.values())
    assert signal["bone"] < 0.05 * min(v for k, v in signal.items() if k != "bone")
    # GM/WM 0.754 (the real ICBM 2009c T1w: 0.79, see test_phantom).
    assert signal["GM"] / signal["WM"] == pytest.approx(0.754, abs=0.01)


def test_default_t2w_tse_contrast():
    signal = _signals(sequence("T2w", "tse"))
    # Measured: WM 0.252 < GM 0.367 < CSF 0.607; fat 0.293 (brighter than WM, the J-coupling T2); bone ~0.
    assert signal["WM"] < signal["GM"] < signal["CSF"]
    assert signal["fat"] > 1.1 * signal["WM"]
    assert signal["fat"] > signal["muscle"] and signal["fat"] > signal["marrow"]
    assert signal["bone"] < 1e-3 * signal["WM"]  # e^(-80): nothing


@pytest.mark.parametrize("name", ["T1w-se", "T2w-se"])
def test_spin_echo_pair_keeps_the_classic_tissue_order(name):
    signal = _signals(SEQUENCES[name])
    order = ("CSF", "GM", "WM") if name.startswith("T1w") else ("WM", "GM", "CSF")
    assert [signal[t] for t in order] == sorted(signal[t] for t in order)
    assert signal["fat"] > signal["WM"]
    assert signal["bone"] < 1e-3 * signal["WM"]  # T1w-se: 1.8e-6 (T2 1 ms, TE 10 ms)


# ------------------------------------------------------------------------------- registry
def test_sequence_names():
    assert T1W_SEQUENCES == ("mprage", "se", "spgr")
    assert T2W_SEQUENCES == ("tse", "se")
    assert sequence("T1w", "mprage") is SEQUENCES["T1w-mprage"]
    assert type(sequence("T2w", "tse")) is TurboSpinEcho
    assert sequence("T1w", "spgr") is SEQUENCES["T1w-spgr"]


@pytest.mark.parametrize(
    "contrast, message",
    [("T1w", "t1w_sequence: expected one of ['mprage', 'se', 'spgr'], found 'bogus'"),
     ("T2w", "t2w_sequence: expected one of ['tse', 'se'], found 'bogus'")],
)
def test_unknown_sequence_names_the_valid_ones(contrast, message):
    with pytest.raises(ValueError) as info:
        sequence(contrast, "bogus")
    assert str(info.value) == message


# ------------------------------------------------------------------------------- jitter
@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_jitter_with_scale_zero_returns_the_protocol_itself(name):
    protocol = SEQUENCES[name]
    assert jitter_timings(np.random.default_rng(0), protocol, 0.0) is protocol


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_jitter_draws_another_protocol_of_the_same_kind(name):
    protocol = SEQUENCES[name]
    jittered = jitter_timings(np.random.default_rng(3), protocol, 0.1)
    assert type(jittered) is type(protocol)
    timings = [f.name for f in dataclasses.fields(protocol) if f.name in ("TR", "TI", "TE", "flip")]
    for field in timings:
        ratio = getattr(jittered, field) / getattr(protocol, field)
        assert ratio != 1.0 and 0.5 < ratio < 2.0, field  # exp(N(0, 0.1)): 0.5-2 is 7 standard deviations
    for field in (f.name for f in dataclasses.fields(protocol) if f.name not in timings):
        assert getattr(jittered, field) == getattr(protocol, field), field  # echo_spacing, readouts


def test_jitter_is_deterministic_per_seed():
    protocol = SEQUENCES["T1w-mprage"]
    first = jitter_timings(np.random.default_rng(11), protocol, 0.1)
    again = jitter_timings(np.random.default_rng(11), protocol, 0.1)
    other = jitter_timings(np.random.default_rng(12), protocol, 0.1)
    assert first == again
    assert first != other


def test_jitter_only_returns_mprage_timings_that_fit():
    # A huge scale makes most draws impossible; the result is always a valid MPRAGE (a redraw, or the protocol).
    protocol = SEQUENCES["T1w-mprage"]
    for seed in range(20):
        jittered = jitter_timings(np.random.default_rng(seed), protocol, 1.0)
        half_train = 0.5 * jittered.readouts * jittered.echo_spacing
        assert jittered.TI > half_train and jittered.TR - jittered.TI > half_train
