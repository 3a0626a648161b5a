"""Working scale of the fast network: the same look at any output resolution.

The network paints strokes of a fixed size in its *input* pixels (it was trained on
256 px crops of photos at short side 320), so run on a 3840x2160 frame it paints strokes
half the size, relative to the picture, of the 1920x1080 version's: 4K looks like fine
scratches. The fast stylizer therefore runs the network at a *working scale*, the frame
shrunk so that its short side is :data:`REFERENCE_SHORT_SIDE` divided by ``--style-scale``
(:func:`network_size`; frames already smaller are not enlarged unless ``--style-scale``
is below 1), and brings the result back to the frame's size with :func:`guided_upsample`,
which keeps the frame's full-resolution edges sharp.

:func:`guided_upsample` is a joint (guided) upsampling: the stylized low-resolution
output is enlarged bilinearly, and the detail the downscaled input lost (full-resolution
input minus its downscaled copy enlarged again) is added through the local affine colour
transform that maps the downscaled input to the stylized output. The transform is the
guided filter's (He et al. 2013, "Guided image filtering"; applied to upsampling as in
He and Sun 2015, "Fast guided filter", and Chen et al. 2016, "Bilateral guided
upsampling"): per low-resolution pixel a 3x3 matrix A fitted by ridge regression over a
(2r+1)^2 window, averaged over the windows that cover the pixel, enlarged bilinearly.
One back-projection step then makes the result, shrunk back to the network's size,
(nearly) the network's output, so the strokes stay as crisp as the network paints them;
an input edge comes out as sharp as in the input, with the output's colours on both
sides. The flow stabilization is unaffected: it blends the network's features at the
working scale (the motion resized to them) and the output at full size.

Images are (B, 3, H, W) float32 RGB in [0, 1].
"""

from __future__ import annotations

import cv2
import torch
import torch.nn.functional as F

from vidstyle.config import STYLE_REFERENCE_SIDE
from vidstyle.imageops import box_mean, resize

#: Short side (pixels) of the network's input at ``--style-scale 1``: frames with a
#: larger short side are shrunk to it (720p frames run as before; a 1080p frame runs at
#: 1280x720, a 4K frame at 1280x720 too, and both look like the 720p output).
REFERENCE_SHORT_SIDE = STYLE_REFERENCE_SIDE
#: Smallest side of the network's input (pixels).
MIN_NETWORK_SIDE = 16
#: Window radius of the local colour transform, in low-resolution pixels.
GUIDE_RADIUS = 2
#: Ridge regularization of the local colour transform (variance units of [0, 1] RGB):
#: where the input varies less than this the transform fades out (no noise amplified).
GUIDE_EPS = 1e-3


def network_size(h: int, w: int, style_scale: float,
                 reference: int | None = None) -> tuple[int, int]:
    """Size (h, w) at which the network runs for an (h, w) frame.

    The frame is shrunk so its short side is ``reference`` (default
    :data:`REFERENCE_SHORT_SIDE`; never enlarged), then divided by ``style_scale`` (2 =
    strokes twice as large; below 1 may enlarge the frame). ``style_scale`` 0: the
    frame's own size (strokes of fixed size in pixels).
    """
    if style_scale < 0:
        raise ValueError(f"style_scale must be >= 0, got {style_scale}")
    if style_scale == 0:
        return h, w
    ref = REFERENCE_SHORT_SIDE if reference is None else reference
    f = min(1.0, ref / min(h, w)) / style_scale
    if abs(f - 1.0) < 1e-9:
        return h, w
    return max(MIN_NETWORK_SIDE, round(h * f)), max(MIN_NETWORK_SIDE, round(w * f))


def local_colour_transform(guide: torch.Tensor, target: torch.Tensor, *,
                           radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS
                           ) -> torch.Tensor:
    """Per-pixel 3x3 matrices A with target ~ A @ guide + b in each (2r+1)^2 window.

    guide: (1, 3, h, w); target: (B, 3, h, w). Returns (B, 3, 3, h, w): A[:, c, k] is the
    gain from guide channel k to target channel c, the ridge solution
    (Sigma_guide + eps I)^-1 cov(guide, target) of each window, averaged over the windows
    covering the pixel (the guided filter's coefficients).
    """
    if guide.shape[0] != 1 or guide.shape[1] != 3 or target.shape[1] != 3:
        raise ValueError(f"expected a (1, 3, h, w) guide and (B, 3, h, w) target, got "
                         f"{tuple(guide.shape)} and {tuple(target.shape)}")
    if guide.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"guide {tuple(guide.shape)} and target {tuple(target.shape)} "
                         "differ in size")
    bsz = target.shape[0]
    g = guide.expand(bsz, -1, -1, -1).float()
    t = target.float()
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    # one box pass over every product: guide means, target means, guide second moments,
    # guide x target cross moments
    stack = torch.cat([g, t, torch.stack([g[:, i] * g[:, j] for i, j in pairs], 1),
                       (t[:, :, None] * g[:, None]).flatten(1, 2)], dim=1)
    m = box_mean(stack, radius)
    mg, mt, mgg, mtg = m[:, :3], m[:, 3:6], m[:, 6:12], m[:, 12:21]
    var = [mgg[:, n] - mg[:, i] * mg[:, j] for n, (i, j) in enumerate(pairs)]
    a, b, c, d, e, f = var
    a, d, f = a + eps, d + eps, f + eps
    # inverse of the symmetric [[a, b, c], [b, d, e], [c, e, f]] by its adjugate
    i00, i01, i02 = d * f - e * e, c * e - b * f, b * e - c * d
    i11, i12, i22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * i00 + b * i01 + c * i02
    inv = torch.stack([i00, i01, i02, i01, i11, i12, i02, i12, i22], 1) / det[:, None]
    inv = inv.reshape(bsz, 3, 3, *g.shape[-2:])
    cov = (mtg.reshape(bsz, 3, 3, *g.shape[-2:])
           - mt[:, :, None] * mg[:, None, :])  # (B, c, k, h, w)
    gain = torch.einsum("bcjhw,bjkhw->bckhw", cov, inv)
    return box_mean(gain.flatten(1, 2).contiguous(), radius).reshape(gain.shape)


def guided_upsample(low: torch.Tensor, guide_low: torch.Tensor, guide: torch.Tensor, *,
                    radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS,
                    back_project: bool = True) -> torch.Tensor:
    """Bring the network output ``low`` (B, 3, h, w) to the size of ``guide`` (1, 3, H, W),
    the full-resolution input whose shrunk copy ``guide_low`` (1, 3, h, w) the network
    ran on.

    out = up(low) + A_up @ (guide - up(guide_low)), clamped to [0, 1], with ``up`` the
    bilinear enlargement and A the :func:`local_colour_transform` from ``guide_low`` to
    ``low`` (window radius ``radius`` low-resolution pixels, ridge ``eps``); then, with
    ``back_project``, one back-projection step (Irani and Peleg 1991): out += up(low -
    shrink(out)), so that the result shrunk back to the network's size is the network's
    output (bilinear enlargement alone blurs the strokes: shrunk back, a 2x-enlarged
    output's Gram statistics were as far from the network's own as the old full-size
    run's). Returns (B, 3, H, W) float32 on ``low``'s device; ``low`` itself when the
    sizes agree.
    """
    size = tuple(guide.shape[-2:])
    if tuple(low.shape[-2:]) == size:
        return low
    dev = low.device
    low = low.float()
    guide_low = guide_low.to(dev, torch.float32)
    gain = local_colour_transform(guide_low, low, radius=radius, eps=eps)  # (B, 3, 3, h, w)
    guide = guide.to(dev, torch.float32)
    detail = torch.stack([guide[0, k] - _enlarge(guide_low[0, k], size) for k in range(3)])
    out = torch.empty(low.shape[0], 3, *size, device=dev)
    for b in range(low.shape[0]):  # plane by plane: no 9-plane full-size copy
        for c in range(3):
            plane = out[b, c]
            plane.copy_(_enlarge(low[b, c], size))
            for k in range(3):
                plane.addcmul_(_enlarge(gain[b, c, k], size), detail[k])
    out.clamp_(0.0, 1.0)
    if back_project:
        # what shrinking the result loses against the network's output, put back: the
        # result shrunk is (nearly) the output itself, strokes as crisp as at low size
        miss = low - shrink(out, tuple(low.shape[-2:]))
        for b in range(low.shape[0]):
            for c in range(3):
                out[b, c].add_(_enlarge(miss[b, c], size))
        out.clamp_(0.0, 1.0)
    return out


def _enlarge(plane: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (half-pixel centres) of one (h, w) float32 plane to ``size``:
    OpenCV on the CPU (several times faster than torch there), torch elsewhere."""
    if plane.device.type == "cpu":
        return torch.from_numpy(cv2.resize(plane.contiguous().numpy(), (size[1], size[0]),
                                           interpolation=cv2.INTER_LINEAR))
    return F.interpolate(plane[None, None], size=size, mode="bilinear",
                         align_corners=False)[0, 0]


def shrink(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> size (h, w), antialiased (the network's input at working scale)."""
    return resize(x, size)


__all__ = ["GUIDE_EPS", "GUIDE_RADIUS", "MIN_NETWORK_SIDE", "REFERENCE_SHORT_SIDE",
           "guided_upsample", "local_colour_transform", "network_size", "shrink"]
