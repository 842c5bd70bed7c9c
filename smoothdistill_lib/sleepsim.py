"""A physically grounded simulator of the paper's sleep-posture protocol (its data are not public).

Protocol simulated: each subject lies in 12 postures (Table 2: the body rotated about its long axis
by 90, 60, 30, 0, 330, ..., 120 degrees), wearing three ADXL345 sensors (neck, chest, abdomen) read
at 50 Hz, +-2 g, 10 bits. Every number of the model is a field of :class:`SleepSimParams`.

Model of one reading (in g, sensor axes), for subject s, posture k, placement p, time t::

    f(t) = B_p(t)^-1 M_sp^-1 W_s(t)^-1 u(theta_sk(t), beta_sp)   gravity ("up") seen by the sensor
         + h_p(t) e_z                                             heartbeat (seismocardiogram pulse)
         + M_sp^-1 g_p w_s(t)                                     movement jerks
         + noise,    then clipped to +-2 g and quantised to 10 bits

* ``u(theta, beta) = (sin beta, cos beta cos theta, cos beta sin theta)`` is the up direction in the
  body segment's frame (x towards the head, y to the body's left, z out of the chest): supine (90)
  reads +z, right lateral (0) reads +y (left side up), prone (270) -z, left lateral (180) -y.
* ``theta_sk`` = the Table 2 angle + a subject-and-posture offset (people do not lie at exact
  angles: adjacent postures, 30 degrees apart, are the main confusion) + small shifts after moves.
* ``beta``: head-up elevation of the segment (trunk; the neck adds the pillow's flexion).
* ``M_sp``: how the sensor sits on the skin: a nominal pitch per placement + a random rotation per
  subject and placement. With the neck's flexion this is what separates placements by gravity.
* ``B_p(t)``: breathing (0.2-0.3 Hz) tilts the skin surface about the lateral axis; largest on the
  abdomen, small on the neck. ``h_p``: heartbeat pulses (1.0-1.3 Hz), largest on the chest,
  small at the neck (carotid). ``W_s``, ``w_s``: occasional brief movements (rotation + jerk).

Stream order: subject (1..n), then placement (neck, chest, abdomen), then posture (Table 2 order);
each (subject, placement, posture) block is one session, the three placements of a subject and
posture being simultaneous recordings (same breathing, heartbeat and movements). Deterministic by
``seed``; subject ``s`` is the same whatever the number of subjects asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from smoothdistill_lib.config import get_mode
from smoothdistill_lib.recordings import Recording, make_frame, sessions_from_runs
from smoothdistill_lib.sleep import PLACEMENT_NAMES, POSTURE_ANGLES_DEG, POSTURE_NAMES


@dataclass(frozen=True)
class SleepSimParams:
    """Every parameter of the simulator. Per-placement tuples are (neck, chest, abdomen)."""

    # sensor (ADXL345 as configured in the paper)
    sampling_rate_hz: float = 50.0  # output data rate
    range_g: float = 2.0  # full scale +-range_g; readings are clipped to it
    resolution_bits: int = 10  # quantisation: LSB = 2 * range_g / 2**bits = 3.9 mg
    noise_sd_g: tuple[float, float, float] = (0.004, 0.004, 0.006)  # white noise per axis x, y, z (datasheet ~1 LSB)
    # posture
    posture_angle_sd_deg: float = 6.0  # subject-and-posture offset from the Table 2 angle
    trunk_elevation_mean_deg: float = 5.0  # head-up tilt of the trunk's long axis (bed, pillow)
    trunk_elevation_sd_deg: float = 3.0  # ... its spread over subjects
    neck_flexion_mean_deg: float = 20.0  # extra elevation of the neck segment on the pillow
    neck_flexion_sd_deg: float = 6.0  # ... its spread over subjects
    # mounting
    mount_pitch_deg: tuple[float, float, float] = (25.0, 12.0, 0.0)  # skin slope under each sensor
    mount_jitter_sd_deg: float = 7.0  # random rotation per subject and placement, sd per axis
    # breathing
    breathing_hz: tuple[float, float] = (0.2, 0.3)  # uniform range, drawn per recording
    breathing_rate_variability: float = 0.05  # relative sd of the slow drift of the breathing rate
    breathing_tilt_deg: tuple[float, float, float] = (0.3, 1.0, 2.0)  # surface tilt amplitude
    # heartbeat
    heart_hz: tuple[float, float] = (1.0, 1.3)  # uniform range, drawn per recording
    heart_rate_variability: float = 0.03  # relative sd of beat-to-beat intervals
    heart_amplitude_g: tuple[float, float, float] = (0.004, 0.012, 0.005)  # pulse peak along sensor z
    heart_pulse_hz: float = 10.0  # oscillation inside one pulse (seismocardiogram band)
    heart_pulse_width_s: float = 0.04  # Gaussian envelope sd of one pulse
    # movements
    movement_rate_per_min: float = 0.6  # Poisson rate of brief movements
    movement_duration_s: tuple[float, float] = (0.5, 2.0)  # uniform range
    movement_tilt_sd_deg: float = 4.0  # peak rotation of the body during a movement
    movement_accel_sd_g: float = 0.03  # peak linear acceleration of a movement
    movement_accel_hz: float = 2.0  # oscillation of the movement jerk
    movement_shift_sd_deg: float = 2.0  # lasting change of the posture angle after a movement
    movement_gain: tuple[float, float, float] = (1.5, 1.0, 0.8)  # how much each placement moves

    def table(self) -> pd.DataFrame:
        """The parameters as a two-column table (name, value), for printing."""
        return pd.DataFrame([(f.name, getattr(self, f.name)) for f in fields(self)], columns=["parameter", "value"])


def up_vector(angle_deg, elevation_deg) -> np.ndarray:
    """Up direction in the body segment's frame, (..., 3): x head, y body's left, z anterior."""
    th, be = np.deg2rad(np.asarray(angle_deg, float)), np.deg2rad(np.asarray(elevation_deg, float))
    th, be = np.broadcast_arrays(th, be)
    return np.stack([np.sin(be), np.cos(be) * np.cos(th), np.cos(be) * np.sin(th)], axis=-1)


def _mount(placement: int, params: SleepSimParams, jitter_rotvec_deg=(0.0, 0.0, 0.0)) -> Rotation:
    """Sensor axes in the segment's frame: nominal pitch about y, then a small random rotation."""
    nominal = Rotation.from_euler("y", params.mount_pitch_deg[placement], degrees=True)
    return nominal * Rotation.from_rotvec(np.deg2rad(jitter_rotvec_deg))


def _elevation(placement: int, trunk_deg: float, neck_flexion_deg: float) -> float:
    return trunk_deg + (neck_flexion_deg if PLACEMENT_NAMES[placement] == "neck" else 0.0)


def gravity_vector(angle_deg, placement: str | int, params: SleepSimParams | None = None) -> np.ndarray:
    """Noise-free reading (g) of a typical subject's sensor at rest: (3,) or (n, 3) for n angles.

    Typical = mean trunk elevation and neck flexion, nominal mounting, no breathing or heartbeat.
    """
    params = params or SleepSimParams()
    p = PLACEMENT_NAMES.index(placement) if isinstance(placement, str) else int(placement)
    beta = _elevation(p, params.trunk_elevation_mean_deg, params.neck_flexion_mean_deg)
    u = up_vector(angle_deg, beta)
    return _mount(p, params).inv().apply(u.reshape(-1, 3)).reshape(u.shape)


def quantise(v: np.ndarray, params: SleepSimParams) -> np.ndarray:
    """Clip to the range and round to the ADXL345's LSB (values stay in g)."""
    lsb = 2 * params.range_g / 2**params.resolution_bits
    half = 2 ** (params.resolution_bits - 1)
    return np.clip(np.round(v / lsb), -half, half - 1) * lsb


def _hann_bumps(t, starts, durations):
    """(n_events, n) raised-cosine bumps, 0 outside each event."""
    if len(starts) == 0:
        return np.zeros((0, len(t)))
    phase = (t[None, :] - starts[:, None]) / durations[:, None]
    inside = (phase >= 0) & (phase <= 1)
    return np.where(inside, 0.5 - 0.5 * np.cos(2 * np.pi * phase), 0.0)


def _simulate_subject_posture(rng, t, posture, subject_draws, params):
    """The three placements' readings (3, n, 3) for one subject and posture, plus a summary dict."""
    fs, n, dur = params.sampling_rate_hz, len(t), len(t) / params.sampling_rate_hz
    # posture angle and brief movements (shared by the three simultaneous sensors)
    angle = POSTURE_ANGLES_DEG[posture] + rng.normal(0, params.posture_angle_sd_deg)
    n_mov = rng.poisson(params.movement_rate_per_min * dur / 60)
    starts = rng.uniform(0, max(dur - params.movement_duration_s[1], 0), n_mov)
    durs = rng.uniform(*params.movement_duration_s, n_mov)
    axes = rng.normal(size=(n_mov, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True) + 1e-12
    tilt = rng.normal(0, params.movement_tilt_sd_deg, n_mov)
    jerk_dir = rng.normal(size=(n_mov, 3))
    jerk_dir /= np.linalg.norm(jerk_dir, axis=1, keepdims=True) + 1e-12
    jerk = rng.normal(0, params.movement_accel_sd_g, n_mov)
    shift = rng.normal(0, params.movement_shift_sd_deg, n_mov)
    bumps = _hann_bumps(t, starts, durs)
    # lasting shift: a smooth step across each movement (cumulative share of its bump)
    ramps = np.cumsum(bumps, axis=1) / np.maximum(bumps.sum(axis=1, keepdims=True), 1e-12)
    theta = angle + (shift[:, None] * ramps).sum(axis=0)
    body_rotvec = np.deg2rad(tilt[:, None, None] * bumps[:, :, None] * axes[:, None, :]).sum(axis=0)
    osc = np.sin(2 * np.pi * params.movement_accel_hz * (t[None, :] - starts[:, None]))
    body_jerk = (jerk[:, None, None] * (bumps * osc)[:, :, None] * jerk_dir[:, None, :]).sum(axis=0)
    # breathing: slowly drifting rate, slightly asymmetric waveform, normalised to peak 1
    f_b = rng.uniform(*params.breathing_hz)
    knots = rng.normal(0, params.breathing_rate_variability, int(dur) + 2)
    f_t = f_b * (1 + np.interp(t, np.arange(len(knots)), knots))
    phase = 2 * np.pi * np.cumsum(f_t) / fs + rng.uniform(0, 2 * np.pi)
    breath = np.sin(phase) + 0.25 * np.sin(2 * phase)
    breath /= 1.2  # peak of sin x + 0.25 sin 2x is about 1.2
    # heartbeat: Gaussian-windowed oscillation at each beat, beat intervals with variability
    f_h = rng.uniform(*params.heart_hz)
    n_beats = int(dur * f_h * 1.5) + 2
    beats = np.cumsum(rng.normal(1.0, params.heart_rate_variability, n_beats) / f_h) - rng.uniform(0, 1 / f_h)
    beats = beats[beats < dur + 0.5]
    dtb = t[None, :] - beats[:, None]
    heart = (np.exp(-0.5 * (dtb / params.heart_pulse_width_s) ** 2) * np.sin(2 * np.pi * params.heart_pulse_hz * dtb)).sum(0)

    out = np.empty((len(PLACEMENT_NAMES), n, 3))
    for p in range(len(PLACEMENT_NAMES)):
        beta = _elevation(p, subject_draws["trunk_deg"], subject_draws["neck_flexion_deg"])
        mount = _mount(p, params, subject_draws["jitter_deg"][p])
        gain = params.movement_gain[p]
        u = up_vector(theta, beta)
        u = Rotation.from_rotvec(gain * body_rotvec).inv().apply(u)  # body rotated during movements
        f = mount.inv().apply(u)
        breath_rot = Rotation.from_euler("y", (params.breathing_tilt_deg[p] * breath)[:, None], degrees=True)
        f = breath_rot.inv().apply(f)
        f += mount.inv().apply(gain * body_jerk)
        f[:, 2] += params.heart_amplitude_g[p] * heart
        f += rng.normal(0, 1, (n, 3)) * np.asarray(params.noise_sd_g)
        out[p] = quantise(f, params)
    summary = {"angle_deg": angle, "breathing_hz": f_b, "heart_hz": f_h, "n_movements": n_mov}
    return out, summary


def simulate(
    n_subjects: int = 24,
    seconds: float = 74.4,
    *,
    seed: int = 0,
    params: SleepSimParams | None = None,
    subjects=None,
) -> Recording:
    """Simulate ``n_subjects`` subjects (ids 1..n) x 12 postures x 3 placements of ``seconds`` each.

    ``subjects`` (ids >= 1) overrides ``n_subjects``. Frame: (n_subj * 3 * 12 * round(seconds*fs), 7).
    ``info``: ``params``, ``recordings`` (DataFrame, one row per session: subject, placement, posture,
    angle_deg actually simulated, breathing_hz, heart_hz, n_movements, n_samples), ``seed``.
    """
    params = params or SleepSimParams()
    ids = list(range(1, int(n_subjects) + 1)) if subjects is None else sorted({int(s) for s in subjects})
    if not ids or min(ids) < 1:
        raise ValueError(f"sleepsim: subjects must be ids >= 1 (got {subjects if subjects is not None else n_subjects!r})")
    n = int(round(seconds * params.sampling_rate_hz))
    if n < 1:
        raise ValueError(f"sleepsim: seconds={seconds!r} gives no samples")
    t = np.arange(n) / params.sampling_rate_hz
    n_post, n_place = len(POSTURE_NAMES), len(PLACEMENT_NAMES)
    blocks, rows = [], []
    for s in ids:
        rng = np.random.default_rng([seed, s])  # per subject: subject s never depends on the others
        draws = {
            "trunk_deg": rng.normal(params.trunk_elevation_mean_deg, params.trunk_elevation_sd_deg),
            "neck_flexion_deg": rng.normal(params.neck_flexion_mean_deg, params.neck_flexion_sd_deg),
            "jitter_deg": rng.normal(0, params.mount_jitter_sd_deg, (n_place, 3)),
        }
        subject_block = np.empty((n_place, n_post, n, 3), np.float32)
        for k in range(n_post):
            readings, summary = _simulate_subject_posture(rng, t, k, draws, params)
            subject_block[:, k] = readings
            rows += [{"subject": s, "placement": PLACEMENT_NAMES[p], "posture": POSTURE_NAMES[k], **summary}
                     for p in range(n_place)]
        blocks.append(subject_block.reshape(-1, 3))  # subject, then placement, then posture
    xyz = np.concatenate(blocks)
    grid = np.indices((len(ids), n_place, n_post)).reshape(3, -1)  # same nesting as the blocks
    subject = np.repeat(np.asarray(ids)[grid[0]], n)
    placement = np.repeat(grid[1], n)
    posture = np.repeat(grid[2], n)
    frame = make_frame(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], subject=subject, activity=posture,
                       placement=placement, session=sessions_from_runs(subject, placement, posture))
    recs = pd.DataFrame(rows)
    recs = recs.set_index(["subject", "placement", "posture"]).loc[
        [(ids[a], PLACEMENT_NAMES[b], POSTURE_NAMES[c]) for a, b, c in grid.T]
    ].reset_index().assign(n_samples=n)
    return Recording(
        name="sleepsim", frame=frame, activity_names=list(POSTURE_NAMES), placement_names=list(PLACEMENT_NAMES),
        sampling_rate_hz=params.sampling_rate_hz,
        info={"params": params, "recordings": recs, "seed": seed, "units": "g",
              "posture_angles_deg": list(POSTURE_ANGLES_DEG)},
    )


def load(root=None, subjects=None, *, mode=None, n_subjects: int | None = None, seconds: float | None = None,
         seed: int = 0, params: SleepSimParams | None = None) -> Recording:
    """:func:`simulate` sized by the run mode (``sleepsim_subjects``, ``sleepsim_seconds``); ``root`` is unused
    (kept so every loader has the same signature). Explicit ``n_subjects``/``seconds`` win over the mode."""
    m = mode if (mode is not None and not isinstance(mode, str)) else get_mode(mode)
    return simulate(n_subjects if n_subjects is not None else m.sleepsim_subjects,
                    seconds if seconds is not None else m.sleepsim_seconds,
                    seed=seed, params=params, subjects=subjects)
