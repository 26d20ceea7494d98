"""The Review page's fast slice view: one slice drawn in the browser from its own pixel values.

The default slice view of the Review page (the interactive plotly figure of :mod:`.figures` stays one
click away, for zoom). Loading plotly's JavaScript into a new browser session costs about a second of
the browser's main thread on this project's 2-core machine (``python -m mre_core.bench --app``,
docs/PERFORMANCE.md); this view needs none: a small HTML page in an iframe draws the slice on a
``<canvas>`` and shows the stiffness under the pointer.

What is sent (:func:`viewer_payload`, pure and unit-tested): the slice's stiffness on its **native
grid** as unsigned 16-bit hundredths of a kPa (:data:`NO_VALUE` where the pixel holds no value;
rounding to 0.005 kPa, far below the display's 8-bit grey), and the confidence region, the ROI and
the model mask as bit-packed rows. The browser draws what :func:`~mre_core.app.roi_drawing.canvas_background`
draws for the drawing canvas: grey 0–8 kPa, dimmed outside the 95 % confidence region with a
yellow outline, the ROI filled red at the chosen opacity with a red outline, and the model mask
(before ∩ confidence) as a dotted cyan outline. With *Magnitude* the background is the exam's magnitude image of
the same slice (paired by :mod:`mre_core.io.magnitude`): the anatomy a reader checks the ROI against (liver edge,
vessels, gallbladder), which the stiffness map does not show. Each native pixel is a ``scale × scale`` block, so the
pixel under the pointer is exact; the readout says its row, column, kPa, and whether it is in the ROI
and in the confidence region. Numbers are never read from display colours.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from mre_core.app.roi_drawing import WINDOW_KPA

#: stored value of a pixel without a stiffness value
NO_VALUE = 65535
#: stiffness is sent in hundredths of a kPa
UNITS_PER_KPA = 100
#: largest stiffness sent exactly (kPa); larger values are sent as this (the readout says "≥")
MAX_KPA = (NO_VALUE - 1) / UNITS_PER_KPA


@dataclass(frozen=True)
class ViewerLayers:
    """What the slice view shows (the Review page's view toggles)."""

    roi_opacity: float = 0.45
    show_confidence: bool = True
    show_roi: bool = True
    show_predicted: bool = False
    magnitude: bool = False  #: the paired magnitude image (anatomy) as the background instead of the stiffness


def magnitude_grey(magnitude: np.ndarray) -> np.ndarray:
    """A magnitude image → uint8 grey, from its 1st to its 99.5th percentile (scanner magnitudes have no fixed
    scale; a few bright pixels, e.g. fat or vessels, would otherwise darken the whole image).

    >>> magnitude_grey(np.arange(1000.0).reshape(10, 100)).min(), magnitude_grey(np.arange(1000.0).reshape(10, 100)).max()
    (np.uint8(0), np.uint8(255))
    """
    m = np.nan_to_num(np.asarray(magnitude, dtype=np.float64))
    lo, hi = np.percentile(m, [1.0, 99.5])
    if hi <= lo:
        return np.zeros(m.shape, dtype=np.uint8)
    return np.round(np.clip((m - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def encode_kpa(kpa: np.ndarray) -> np.ndarray:
    """kPa float [H, W] → uint16 hundredths of a kPa; NaN/inf/negative → :data:`NO_VALUE`.

    >>> encode_kpa(np.array([[2.344, np.nan, 0.0, 900.0]])).tolist()
    [[234, 65535, 0, 65534]]
    """
    kpa = np.asarray(kpa, dtype=np.float64)
    ok = np.isfinite(kpa) & (kpa >= 0)
    out = np.full(kpa.shape, NO_VALUE, dtype=np.uint16)
    out[ok] = np.round(np.minimum(kpa[ok], MAX_KPA) * UNITS_PER_KPA).astype(np.uint16)
    return out


def decode_kpa(units: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_kpa` (NaN where no value), for tests and for reading a payload back."""
    units = np.asarray(units, dtype=np.uint16)
    return np.where(units == NO_VALUE, np.nan, units / UNITS_PER_KPA)


def pack_mask(mask: np.ndarray) -> str:
    """bool [H, W] → base64 of ``np.packbits`` over each row (big-endian bits, rows padded to whole bytes)."""
    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool), axis=1).tobytes()).decode("ascii")


def unpack_mask(text: str, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack_mask`."""
    rows, cols = shape
    packed = np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(rows, -1)
    return np.unpackbits(packed, axis=1)[:, :cols].astype(bool)


def viewer_scale(shape: tuple[int, int], target_px: int) -> int:
    """Whole screen pixels per native pixel so the slice is about ``target_px`` wide (at least 1).

    >>> viewer_scale((204, 256), 600), viewer_scale((512, 512), 360), viewer_scale((64, 64), 360)
    (2, 1, 6)
    """
    return max(1, min(8, int(round(target_px / max(1, shape[1])))))


def viewer_payload(kpa: np.ndarray, confidence: np.ndarray, roi: np.ndarray, predicted: np.ndarray,
                   layers: ViewerLayers, scale: int, label: str = "", magnitude: np.ndarray | None = None
                   ) -> dict[str, Any]:
    """Everything the browser needs to draw one slice (JSON-able). The magnitude (when ``layers.magnitude`` and
    the slice has one) is sent as uint8 grey (:func:`magnitude_grey`) and drawn instead of the stiffness grey;
    the readout still gives the stiffness."""
    rows, cols = np.asarray(kpa).shape
    units = encode_kpa(kpa).astype("<u2")
    grey = None
    if layers.magnitude and magnitude is not None and np.asarray(magnitude).shape == (rows, cols):
        grey = base64.b64encode(magnitude_grey(magnitude).tobytes()).decode("ascii")
    return {
        "magnitude": grey,
        "rows": int(rows), "cols": int(cols), "scale": int(scale), "label": label,
        "window": [float(WINDOW_KPA[0]), float(WINDOW_KPA[1])], "unitsPerKpa": UNITS_PER_KPA, "noValue": NO_VALUE,
        "kpa": base64.b64encode(units.tobytes()).decode("ascii"),
        "confidence": pack_mask(confidence), "roi": pack_mask(roi), "predicted": pack_mask(predicted),
        "opacity": float(layers.roi_opacity), "showConfidence": bool(layers.show_confidence),
        "showRoi": bool(layers.show_roi), "showPredicted": bool(layers.show_predicted),
    }


def viewer_height(rows: int, scale: int) -> int:
    """Iframe height (CSS px): the image plus the readout (up to three lines in a narrow column)."""
    return rows * scale + 56


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;background:transparent;font:13px 'Source Sans Pro',sans-serif;color:#31333f}
canvas{display:block;image-rendering:pixelated;background:#000;cursor:crosshair}
#r{height:48px;line-height:16px;font-size:12px;margin-top:4px;overflow:hidden}
</style></head><body><canvas id="c" role="img"></canvas><div id="r" data-testid="slice-readout"></div><script>
const d=__PAYLOAD__;
const R=d.rows,C=d.cols,S=d.scale;
const b64=s=>Uint8Array.from(atob(s),ch=>ch.charCodeAt(0));
const kb=b64(d.kpa),kpa=new Uint16Array(kb.buffer,kb.byteOffset,R*C);
const stride=Math.ceil(C/8);
const bits=s=>{const p=b64(s),m=new Uint8Array(R*C);for(let r=0;r<R;r++)for(let c=0;c<C;c++)
  m[r*C+c]=(p[r*stride+(c>>3)]>>(7-(c&7)))&1;return m;};
const conf=bits(d.confidence),roi=bits(d.roi),pred=bits(d.predicted);
const cv=document.getElementById('c');cv.width=C*S;cv.height=R*S;
cv.setAttribute('aria-label',(d.label?d.label+': ':'')+'elastogram, '+C+' x '+R+' native pixels');
const g=cv.getContext('2d');
const img=g.createImageData(C,R),px=img.data;
const lo=d.window[0],hi=d.window[1],a=d.showRoi?d.opacity:0;
const mag=d.magnitude?b64(d.magnitude):null;
for(let i=0;i<R*C;i++){
  const u=kpa[i];let v=mag?mag[i]:(u===d.noValue?0:Math.max(0,Math.min(1,(u/d.unitsPerKpa-lo)/(hi-lo)))*255);
  if(!conf[i])v*=0.45;
  let rr=v,gg=v,bb=v;
  if(roi[i]&&a>0){rr=(1-a)*v+a*230;gg=(1-a)*v+a*40;bb=(1-a)*v+a*40;}
  px[4*i]=rr;px[4*i+1]=gg;px[4*i+2]=bb;px[4*i+3]=255;}
const off=document.createElement('canvas');off.width=C;off.height=R;off.getContext('2d').putImageData(img,0,0);
g.imageSmoothingEnabled=false;g.drawImage(off,0,0,C*S,R*S);
function outline(m,colour,dash){g.beginPath();
  for(let r=0;r<=R;r++)for(let c=0;c<C;c++){const up=r>0?m[(r-1)*C+c]:0,dn=r<R?m[r*C+c]:0;
    if(up!==dn){g.moveTo(c*S,r*S);g.lineTo((c+1)*S,r*S);}}
  for(let c=0;c<=C;c++)for(let r=0;r<R;r++){const lf=c>0?m[r*C+c-1]:0,rt=c<C?m[r*C+c]:0;
    if(lf!==rt){g.moveTo(c*S,r*S);g.lineTo(c*S,(r+1)*S);}}
  g.strokeStyle=colour;g.lineWidth=Math.max(1,S/2);g.setLineDash(dash);g.stroke();}
if(d.showConfidence)outline(conf,'rgb(255,210,0)',[]);
if(d.showRoi)outline(roi,'rgb(230,40,40)',[]);
if(d.showPredicted)outline(pred,'rgb(0,200,255)',[2,2]);
const out=document.getElementById('r');
const idle=(mag?'Magnitude image (anatomy)':'Grey 0–8 kPa')+' · yellow: 95 % confidence region'+(d.showRoi?' · red: ROI':'')+(d.showPredicted?' · cyan dots: model mask':'')+' · point at a pixel for its kPa';out.textContent=idle;
cv.addEventListener('mousemove',ev=>{const b=cv.getBoundingClientRect();
  const c=Math.floor((ev.clientX-b.left)*C/b.width),r=Math.floor((ev.clientY-b.top)*R/b.height);
  if(r<0||c<0||r>=R||c>=C)return;const i=r*C+c,u=kpa[i];
  const val=u===d.noValue?'no value':((u===d.noValue-1?'≥ ':'')+(u/d.unitsPerKpa).toFixed(2)+' kPa');
  out.textContent='row '+r+', col '+c+': '+val+(roi[i]?' · in ROI':'')+(conf[i]?' · confident':' · outside confidence region');});
cv.addEventListener('mouseleave',()=>{out.textContent=idle;});
</script></body></html>"""


def viewer_html(payload: dict[str, Any]) -> str:
    """The iframe's page for one slice (self-contained: no script or style is fetched)."""
    return _PAGE.replace("__PAYLOAD__", json.dumps(payload, separators=(",", ":")))


def show_slice_image(box: Any, e: Any, s: Any, layers: ViewerLayers, target_px: int, label: str = "") -> None:
    """The fast view of slice ``e`` (its result ``s``) in ``box``."""
    import streamlit as st
    from streamlit.components.v1 import html

    scale = viewer_scale(e.shape, target_px)
    payload = viewer_payload(e.kpa, e.confidence, s.roi, s.predicted_mask, layers, scale, label,
                             getattr(e, "magnitude", None))
    with box:
        if label:
            st.markdown(f"**{label}**")
        html(viewer_html(payload), height=viewer_height(e.shape[0], scale))


__all__ = ["MAX_KPA", "NO_VALUE", "UNITS_PER_KPA", "ViewerLayers", "decode_kpa", "encode_kpa", "magnitude_grey",
           "pack_mask",
           "show_slice_image", "unpack_mask", "viewer_height", "viewer_html", "viewer_payload", "viewer_scale"]
