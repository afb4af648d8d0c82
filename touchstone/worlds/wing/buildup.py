"""AeroBuildup's lift and drag for many wings at once: `curves` gives each design's CL and CD over the
angle grid, as `asb.AeroBuildup(...).run()` gives them for one.

Why this is written here rather than called: AeroBuildup analyses one airplane per call, and a stock
run takes ~9 ms a design: four NeuralFoil calls of 17 angles (each costs nearly the same however few
its points) and Python overhead (object construction, frames, ~60 atmosphere and axis conversions).
Every design in this world is the same kind of wing: symmetric, two cross-sections (root at the
origin untwisted, tip swept back and twisted), one airfoil, no fuselage or control surfaces, flown at
zero sideslip and rotation rate. For that wing the steps of `AeroBuildup.wing_aerodynamics` and
`AeroBuildup.run` are written out below in the same order (the tip's twist tilts its quarter-chord
point, so the small dihedral that gives is kept), as numpy arrays with one row per design and one
column per angle of attack, and the library's own functions do the physics: `OperatingPoint` (axes,
Reynolds, Mach, dynamic pressure), `Atmosphere`, `CL_over_Cl`, `oswalds_efficiency` and
`KulfanAirfoil.get_aero_from_neuralfoil`, called once for every section of every design (`_Stack`).
What the steps leave out changes no force: the aerodynamic centres and pitching moments only give
moments, the rotation terms are zero, and the mirrored half-wing's forces are the first half's with
y negated (so the total is twice its x and z). The results equal a
stock run's up to float rounding (the tests compare every rounded figure with `analyze_design(plain=True)`).
"""

from __future__ import annotations

import aerosandbox as asb
import aerosandbox.library.aerodynamics as aerolib
import aerosandbox.numpy as anp
import numpy as np

MODEL_SIZE = "small"  # AeroBuildup's default, which the stock path uses


class _Stack(asb.KulfanAirfoil):
    """Several airfoils as one, a column of Kulfan weights per point: NeuralFoil's network and the stock
    wrapper's post-stall, compressibility and wave-drag steps all work point by point, so one call
    answers every section of every design. The only airfoil property the wrapper asks besides the
    weights is `max_thickness`, which is given per point here."""

    def __init__(self, airfoils: list, thickness: list[float], repeat: int):
        # airfoils[i] and thickness[i] for points i * repeat to (i + 1) * repeat - 1
        def per_point(values):
            return np.repeat(np.array(values, float), repeat, axis=0)

        super().__init__(
            name="stack",
            lower_weights=per_point([a.lower_weights for a in airfoils]).T,
            upper_weights=per_point([a.upper_weights for a in airfoils]).T,
            leading_edge_weight=per_point([a.leading_edge_weight for a in airfoils]),
            TE_thickness=per_point([a.TE_thickness for a in airfoils]),
        )
        self.thickness = per_point(thickness)

    def max_thickness(self, *args, **kwargs):
        return self.thickness


# Vectors here are (x, y, z) tuples of per-design arrays, which np.dot, np.cross and np.linalg.norm
# (one vector at a time) do not take; these are the same sums in the same order.
def _dot(a, b):
    return sum(ai * bi for ai, bi in zip(a, b))


def _norm(v):
    return np.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def curves(designs: list[dict], tip_x: list[float], airfoils: list, thickness: list[float], alphas) -> tuple:
    """(CL, CD, area, density): CL and CD of shape (designs, alphas), area and density one per design.
    Each design has span, root_chord, taper, twist, speed, altitude (validated floats); tip_x[i] is
    design i's tip leading edge (`aero.tip_x`, as the stock path places it), airfoils[i] its stock
    Kulfan airfoil and thickness[i] that airfoil's max_thickness()."""
    col = {k: np.array([[float(d[k])] for d in designs]) for k in ("span", "root_chord", "taper", "twist", "speed")}
    b, cr, twist = col["span"], col["root_chord"], col["twist"]
    ct = cr * col["taper"]
    h = b / 2
    x_tip = np.array(tip_x, float)[:, None]
    zero = np.zeros_like(b)

    ### Wing geometry (`Wing` methods): the root frame is the identity, the tip's is rotated by its twist.
    angle = twist * np.pi / 180
    s, c = np.sin(angle), np.cos(angle)
    qc_root = (0.25 * cr, zero, zero)
    qc_tip = (x_tip + 0.25 * ct * c, h, zero - 0.25 * ct * s)
    qc_vector = tuple(t - r for t, r in zip(qc_tip, qc_root))
    half_span = (qc_vector[1] ** 2 + qc_vector[2] ** 2) ** 0.5  # span(type="yz", _sectional=True)
    half_area = half_span * ((ct + cr) / 2)
    area = 2 * half_area
    taper = ct / cr
    section_mac = (2 / 3) * cr * ((1 + taper + taper**2) / (1 + taper))
    mac = (section_mac * half_area) / half_area
    qc_norm = _norm(qc_vector)
    qc_dir = tuple(v / qc_norm for v in qc_vector)
    sweep = anp.arcsind(qc_dir[0])
    dihedral = anp.arctan2d(qc_dir[2], qc_dir[1])

    ### Effective span and area of a symmetric wing whose root lies on the centreline
    span_0, span_90 = 2 * (half_span + 0 * 0.5), half_span
    area_0, area_90 = 2 * (half_area + 0 * mac * 0.5), half_area
    dihedral_factor = anp.sind(dihedral) ** 2
    span_effective = span_0 + (span_90 - span_0) * dihedral_factor
    area_effective = area_0 + (area_90 - area_0) * dihedral_factor
    ar_effective = span_effective**2 / area_effective

    atmosphere = asb.Atmosphere(altitude=np.array([[float(d["altitude"])] for d in designs]), method="isa")
    op = asb.OperatingPoint(atmosphere=atmosphere, velocity=col["speed"], alpha=np.asarray(alphas, float)[None, :])
    mach = op.mach()
    ar_3d = aerolib.CL_over_Cl(aspect_ratio=ar_effective, mach=mach, sweep=sweep, Cl_is_compressible=True)
    oswald = aerolib.oswalds_efficiency(
        taper_ratio=taper, aspect_ratio=ar_effective, sweep=sweep, fuselage_diameter_to_span_ratio=0
    )

    ### The section's frame (`Wing._compute_frame_of_section`)
    in_back = (cr, zero, zero)
    out_front, out_back = (x_tip, h, zero), (x_tip + ct * c, h, zero - ct * s)
    diag1 = out_back
    diag2 = tuple(f - k for f, k in zip(out_front, in_back))
    cross = _cross(diag1, diag2)
    cross_norm = _norm(cross)
    zg = tuple(v / cross_norm for v in cross)
    quarter = tuple((0.75 * f + 0.25 * k) - (0.25 * i) for f, k, i in zip(out_front, out_back, in_back))
    quarter = (zero, quarter[1], quarter[2])
    quarter_norm = _norm(quarter)
    yg = tuple(v / quarter_norm for v in quarter)
    xg = _cross(yg, zg)

    ### Section aerodynamics (`compute_section_aerodynamics`)
    a_weight, b_weight = cr / (cr + ct), ct / (cr + ct)
    vel = op.convert_axes(-op.velocity, 0, 0, from_axes="wind", to_axes="geometry")
    vel = tuple(np.broadcast_to(v, (len(designs), len(alphas))) for v in vel)
    vel_mag = np.sqrt(sum(v**2 for v in vel))
    vel_dir = tuple(v / vel_mag for v in vel)
    vel_dot_x, vel_dot_z = _dot(vel_dir, xg), _dot(vel_dir, zg)
    alpha_generalized = anp.where(
        vel_dot_x > 0,
        90 - anp.arccosd(anp.clip(vel_dot_z, -1, 1)),
        90 + anp.arccosd(anp.clip(vel_dot_z, -1, 1)),
    )
    alpha_effective = alpha_generalized - (1 - ar_3d**0.8) * anp.sind(2 * alpha_generalized) / 2 * (180 / np.pi)
    sweep_rad = anp.arcsin(_dot(vel_dir, qc_dir))
    mach_normal = mach * anp.cos(sweep_rad)
    shape = alpha_effective.shape
    re_a, re_b = (np.broadcast_to(op.reynolds(chord), shape) for chord in (cr, ct))

    # One NeuralFoil call: every root section's angles, then every tip's.
    stack = _Stack(airfoils * 2, thickness * 2, len(alphas))
    out = stack.get_aero_from_neuralfoil(
        alpha=np.concatenate([alpha_effective.ravel()] * 2),
        Re=np.concatenate([re_a.ravel(), re_b.ravel()]),
        mach=np.concatenate([mach_normal.ravel()] * 2),
        control_surfaces=[],
        model_size=MODEL_SIZE,
    )
    n = alpha_effective.size
    root, tip = ({k: np.reshape(out[k][part], shape) for k in ("CL", "CD")} for part in (slice(0, n), slice(n, 2 * n)))
    sect_cl = (root["CL"] * a_weight + tip["CL"] * b_weight) * ar_3d**0.2
    sect_cd = root["CD"] * a_weight + tip["CD"] * b_weight

    q_local = 0.5 * op.atmosphere.density() * vel_mag**2
    sect_lift, sect_drag = q_local * half_area * sect_cl, q_local * half_area * sect_cd
    lift_dir = [zg[i] - vel_dot_z * vel_dir[i] for i in range(3)]
    lift_dir = [anp.where(vel_dot_x > 0, u, -1 * u) for u in lift_dir]
    lift_mag = np.sqrt(sum(u**2 for u in lift_dir))
    lift_dir = [u / lift_mag for u in lift_dir]
    half_force = [sect_lift * lift_dir[i] + sect_drag * vel_dir[i] for i in range(3)]
    # Both halves: the mirrored half's x and z equal the first half's, its y is the first half's negated.
    force = [half_force[0] + half_force[0], half_force[1] - half_force[1], half_force[2] + half_force[2]]

    ### `AeroBuildup.run`: induced drag over the whole wing, then coefficients
    q = op.dynamic_pressure()
    _, sideforce, lift = op.convert_axes(*force, from_axes="geometry", to_axes="wind")
    d_induced = (lift**2 + sideforce**2) / (q * np.pi * (span_effective**2 * oswald))
    d_induced_g = op.convert_axes(-d_induced, 0, 0, from_axes="wind", to_axes="geometry")
    force = [force[i] + d_induced_g[i] for i in range(3)]
    f_w = op.convert_axes(*force, from_axes="geometry", to_axes="wind")
    qs = q * area
    return -f_w[2] / qs, -f_w[0] / qs, area[:, 0], atmosphere.density()[:, 0]
