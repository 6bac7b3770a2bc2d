from __future__ import annotations

import numpy as np
import pytest
from mediafiles import tone, write_mp4, write_wav

from omnimer.data.media import MediaError, decode_audio, decode_frames, sample_indices


def test_sample_indices_uniform_and_padded():
    assert sample_indices(16, 4).tolist() == [2, 6, 10, 14]
    assert sample_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # short clip: frames repeat
    idx = sample_indices(1000, 8)
    assert (np.diff(idx) == 125).all()


def test_decode_frames_resizes_and_records_fps(tmp_path):
    path = write_mp4(tmp_path / "a.mp4", n_frames=24, fps=12, size=64)
    frames = decode_frames(str(path), 6, 28)
    assert frames.pixels.shape == (6, 28, 28, 3) and frames.pixels.dtype == np.uint8
    assert frames.duration == pytest.approx(2.0)
    assert frames.sample_fps == pytest.approx(3.0)  # 6 frames over 2 s
    assert frames.source_frames == 24


def test_audio_from_wav_and_from_mp4_agree_in_length(tmp_path):
    wav = write_wav(tmp_path / "a.wav", tone(2.0))
    mp4 = write_mp4(tmp_path / "a.mp4", n_frames=16, fps=8)
    from_wav = decode_audio(str(wav), 16000, 10.0)
    from_mp4 = decode_audio(str(mp4), 16000, 10.0)
    assert from_wav.dtype == np.float32 and from_wav.size == 32000
    assert abs(from_mp4.size - 32000) < 0.1 * 32000  # AAC adds priming samples
    np.testing.assert_allclose(from_wav[:1000], tone(2.0)[:1000], atol=1e-3)
    assert decode_audio(str(wav), 16000, 0.5).size == 8000


def test_media_errors(tmp_path):
    empty = tmp_path / "e.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"video file is empty \(0 bytes\)"):
        decode_frames(str(empty), 4, 28)
    junk = tmp_path / "j.mp4"
    junk.write_bytes(b"not a video" * 50)
    with pytest.raises(MediaError, match=r"cannot decode video \(corrupt or not a video file\)"):
        decode_frames(str(junk), 4, 28)
    with pytest.raises(MediaError, match="single frame"):
        decode_frames(str(write_mp4(tmp_path / "one.mp4", n_frames=1)), 4, 28)
    with pytest.raises(MediaError, match="no audio track"):
        decode_audio(str(write_mp4(tmp_path / "silent.mp4", audio=False)), 16000, 5)
    bad = tone(1.0)
    bad[1600] = np.inf
    with pytest.raises(MediaError, match=r"audio has 1 non-finite samples \(NaN/inf\), first at 0.100 s"):
        decode_audio(str(write_wav(tmp_path / "inf.wav", bad, float32=True)), 16000, 5)
