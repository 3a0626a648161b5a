from __future__ import annotations

import torch

from tests.flow._clips import dilate, erode, four_neighbour_edge, moving_square
from vidstyle.flow import (
    consistency_mask,
    long_term_weights,
    make_flow,
    motion_boundary_mask,
)


def test_moving_square_mask_is_exact():
    s = moving_square()
    c = consistency_mask(s["forward"], s["backward"])
    assert c.shape == (1, 1, 64, 80)
    assert set(c.unique().tolist()) <= {0.0, 1.0}
    c = c[0, 0]
    old, new = s["old"], s["new"]
    disoccluded = old & ~new  # visible in b, hidden under the square in a
    assert disoccluded.sum() > 100
    assert c[disoccluded].eq(0).all()
    # static background away from the square's new outline is reliable
    static = ~old & ~dilate(new)
    assert c[static].eq(1).all()
    # the square's interior moved consistently
    assert c[erode(new)].eq(1).all()
    # both sides of the new square's outline are motion boundaries (central differences);
    # the rest of the new square's 1-px ring is reliable
    outline = four_neighbour_edge(new)
    assert c[outline].eq(0).all()
    ring = dilate(new) & ~erode(new) & ~outline & ~old
    assert ring.sum() > 0 and c[ring].eq(1).all()


def test_out_of_frame_targets_are_inconsistent():
    h, w = 12, 16
    fwd = torch.zeros(1, 2, h, w)
    bwd = torch.zeros(1, 2, h, w)
    fwd[:, 0], bwd[:, 0] = 3.0, -3.0  # global pan: columns 0..2 of b come from outside a
    c = consistency_mask(fwd, bwd)[0, 0]
    assert c[:, :3].eq(0).all() and c[:, 3:].eq(1).all()


def test_motion_boundary_thresholds():
    h, w = 9, 9
    f = torch.zeros(1, 2, h, w)
    f[..., 5:] = 0.1  # a step of 0.1 px: |grad|^2 = 0.0025 > 0.002 at the step
    m = motion_boundary_mask(f)[0, 0]
    assert m[:, 4:6].eq(1).all() and m[:, :4].eq(0).all() and m[:, 6:].eq(0).all()
    f[..., 5:] = 0.05  # 0.000625 < 0.002: smooth enough
    assert motion_boundary_mask(f).eq(0).all()


def test_long_term_weights_arithmetic():
    c1 = torch.tensor([[1.0, 0.0, 0.0, 1.0]]).view(1, 1, 1, 4)
    c2 = torch.tensor([[1.0, 1.0, 0.0, 0.0]]).view(1, 1, 1, 4)
    c4 = torch.tensor([[1.0, 1.0, 1.0, 0.5]]).view(1, 1, 1, 4)
    out = long_term_weights({4: c4, 1: c1, 2: c2})  # order of the mapping is irrelevant
    assert sorted(out) == [1, 2, 4]
    assert torch.equal(out[1], c1)
    assert torch.equal(out[2].flatten(), torch.tensor([0.0, 1.0, 0.0, 0.0]))
    # c4 - (c1 + c2), clipped at 0
    assert torch.equal(out[4].flatten(), torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.equal(c1.flatten(), torch.tensor([1.0, 0.0, 0.0, 1.0]))  # inputs untouched


def test_estimated_flow_masks_the_disocclusion():
    s = moving_square(96, 128, top=30, left=30, side=32, dx=8, dy=4)
    est = make_flow("dis", preset="medium")
    fwd = est.estimate(s["a"], s["b"])
    bwd = est.estimate(s["b"], s["a"])
    c = consistency_mask(fwd, bwd)[0, 0]
    disoccluded = erode(s["old"] & ~s["new"])
    far = ~dilate(s["old"] | s["new"], 6)
    assert c[disoccluded].mean() < 0.3
    assert c[far].mean() > 0.9
    assert float(c.mean()) > 0.7


def test_flow_confidence_is_a_soft_consistency_mask():
    """softness 0 is the binary mask; softness > 0 keeps every pixel the mask keeps (at
    weight 1) and adds pixels whose forward-backward error is within (1 + s) times the
    tolerance, at a weight that falls with the error; never on motion boundaries."""
    from vidstyle.flow import flow_confidence
    from vidstyle.flow.consistency import OCCLUSION_ABS

    s = moving_square(96, 128, top=30, left=30, side=32, dx=8, dy=4)
    est = make_flow("dis", preset="medium")
    fwd, bwd = est.estimate(s["a"], s["b"]), est.estimate(s["b"], s["a"])
    binary = consistency_mask(fwd, bwd)
    assert torch.equal(flow_confidence(fwd, bwd, softness=0), binary)
    soft = flow_confidence(fwd, bwd, softness=3)
    assert torch.equal(soft[binary == 1], torch.ones_like(soft[binary == 1]))
    assert float(soft.sum()) >= float(binary.sum())
    assert float(soft.min()) >= 0 and float(soft.max()) <= 1
    # zero forward flow, uniform backward flow of squared length e2: the error is e2 and
    # the tolerance 0.01 * e2 + 0.5, relative to the flow's magnitude
    zero = torch.zeros(1, 2, 8, 8)
    for e2 in (0.5, 1.25, 1.8, 2.5):
        off = zero.clone()
        off[:, 0] = e2 ** 0.5
        tol = 0.01 * e2 + OCCLUSION_ABS
        want = min(1.0, max(0.0, 1.0 - (e2 - tol) / (3 * tol)))
        w = flow_confidence(zero, off, softness=3)[0, 0, 2:-2, 2:-2]
        assert torch.allclose(w, torch.full_like(w, want), atol=1e-4), (e2, w.mean())
    # motion boundaries stay at 0
    assert float(soft[motion_boundary_mask(bwd) == 1].max()) == 0.0


def test_photometric_agreement_trusts_a_flow_that_explains_the_frame():
    """A textured square moves by (8, 4) over a textured background: with the true
    backward flow the warp reproduces the frame (agreement ~1 away from the motion
    boundary and the disoccluded strip); with zero flow the moving texture disagrees
    (agreement ~0 there) while the static background still agrees."""
    from vidstyle.flow import photometric_agreement
    from vidstyle.flow.warp import warp

    s = moving_square(96, 128, top=30, left=30, side=32, dx=8, dy=4)
    a, b = s["a"], s["b"]
    right = photometric_agreement(a, b, s["backward"], sigma=0.03)
    wrong = photometric_agreement(a, b, torch.zeros_like(s["backward"]), sigma=0.03)
    assert right.shape == (1, 1, 96, 128)
    assert float(right.min()) >= 0 and float(right.max()) <= 1
    inside = erode(s["new"], 4)
    static = ~dilate(s["old"] | s["new"], 4)
    assert float(right[0, 0][inside].mean()) > 0.95
    assert float(right[0, 0][static].mean()) > 0.95
    assert float(wrong[0, 0][inside].mean()) < 0.2
    assert float(wrong[0, 0][static].mean()) > 0.95
    # the agreement is a function of the residual of the warp: exp(-r / sigma^2)
    res = (b - warp(a, s["backward"])).pow(2).mean(dim=1, keepdim=True)
    point = photometric_agreement(a, b, s["backward"], sigma=0.05, radius=0)
    keep = (1 - motion_boundary_mask(s["backward"]))
    assert torch.allclose(point[keep == 1], torch.exp(-res / 0.05**2)[keep == 1], atol=1e-5)
    for bad in ({"sigma": 0.0}, {"sigma": 0.03, "radius": -1}):
        try:
            photometric_agreement(a, b, s["backward"], **bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_the_pair_computes_its_weights_once_with_the_same_values():
    """frame_pair keeps the forward-backward map it derives the mask from, and the
    stabilizer's soft confidence taken from that map equals flow_confidence computed
    afresh; the pair's agreement (given the reliable region) equals the standalone one."""
    from vidstyle.fast.stabilize import Stabilizer
    from vidstyle.flow import (
        confidence_from_inconsistency,
        flow_confidence,
        frame_pair,
        inconsistency,
        photometric_agreement,
    )
    from vidstyle.flow.consistency import AGREEMENT_SIGMA

    s = moving_square(96, 128, top=30, left=30, side=32, dx=8, dy=4)
    est = make_flow("dis", preset="fast")
    pair = frame_pair(s["a"], s["b"], flow=est)
    assert pair.inconsistency is not None and pair.agreement is not None
    assert torch.equal(pair.mask, consistency_mask(pair.forward, pair.backward))
    assert torch.equal(pair.inconsistency, inconsistency(pair.forward, pair.backward))
    assert torch.isinf(pair.inconsistency[motion_boundary_mask(pair.backward) == 1]).all()
    for softness in (0.0, 1.0, 3.0):
        soft = confidence_from_inconsistency(pair.inconsistency, softness=softness)
        fresh = flow_confidence(pair.forward, pair.backward, softness=softness)
        assert torch.allclose(soft, fresh, atol=1e-6)
        stab = Stabilizer(flow=est, stability=0.7, softness=softness, agreement=False)
        assert torch.allclose(stab.confidence(pair), fresh, atol=1e-6)
    alone = photometric_agreement(s["a"], s["b"], pair.backward, sigma=AGREEMENT_SIGMA)
    assert torch.allclose(pair.agreement, alone, atol=1e-6)
    # a residual far beyond sigma gives 0 (the exponent is clamped, not wrapped)
    dark = photometric_agreement(s["a"], 1 - s["a"], pair.backward, sigma=0.001, radius=0)
    assert float(dark.max()) < 1e-12 and float(dark.min()) >= 0


def test_a_nan_flow_is_never_trusted():
    from vidstyle.flow import confidence_from_inconsistency, inconsistency

    fwd = torch.zeros(1, 2, 16, 16)
    bwd = torch.zeros(1, 2, 16, 16)
    fwd[0, 0, 4:8, 4:8] = float("nan")
    ratio = inconsistency(fwd, bwd)
    assert torch.isinf(ratio[0, 0, 4:8, 4:8]).all()
    for softness in (0.0, 3.0):
        c = confidence_from_inconsistency(ratio, softness=softness)
        assert not torch.isnan(c).any() and float(c[0, 0, 4:8, 4:8].max()) == 0.0
        assert float(c[0, 0, 10:, 10:].min()) == 1.0
    assert float(consistency_mask(fwd, bwd)[0, 0, 4:8, 4:8].max()) == 0.0


def test_box_mean_on_the_cpu_equals_torch_pooling():
    import torch.nn.functional as F

    from vidstyle.imageops import box_mean

    x = torch.rand(2, 5, 23, 31)
    for r in (0, 1, 3):
        want = F.avg_pool2d(F.pad(x, (r,) * 4, mode="replicate"), 2 * r + 1, stride=1)
        assert torch.allclose(box_mean(x, r), want, atol=1e-6)
