"""Source URIs: schemes, file paths and credential masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsa.uri import check_scheme, file_path, mask_uri, scheme_of

MASK_CASES = [
    # userinfo
    pytest.param("rtsp://admin:hunter2@cam/stream?token=x", "rtsp://admin:***@cam/stream?token=***", "hunter2", id="docstring-example"),
    pytest.param("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://admin:***@10.0.0.5:554/live", "hunter2", id="password-with-port"),
    pytest.param("rtsps://admin:s3cr3t@[::1]:322/x", "rtsps://admin:***@[::1]:322/x", "s3cr3t", id="password-ipv6-host"),
    pytest.param("rtsp://u:p%40ss%3Aword@h/x", "rtsp://u:***@h/x", "p%40ss", id="percent-encoded-password"),
    pytest.param("rtsp://u:pa@ss@cam/x", "rtsp://u:***@cam/x", "pa@ss", id="raw-at-in-password"),
    pytest.param("rtsp://u:pa:ss@cam/x", "rtsp://u:***@cam/x", "pa:ss", id="colon-in-password"),
    pytest.param("rtsp://u:@cam/x", "rtsp://u:***@cam/x", None, id="empty-password"),
    # user only: could be a bearer token, hidden entirely
    pytest.param("rtsp://admin@cam/s", "rtsp://***@cam/s", "admin", id="user-only"),
    pytest.param("https://ghp_abcdef123@host/live.m3u8", "https://***@host/live.m3u8", "ghp_abcdef123", id="token-as-user"),
    # secret query keys, any case, repeated, other keys kept
    pytest.param("https://h/p.m3u8?token=abc123&x=1", "https://h/p.m3u8?token=***&x=1", "abc123", id="query-token"),
    pytest.param("http://h/p?user=bob&password=hunter2", "http://h/p?user=bob&password=***", "hunter2", id="query-password"),
    pytest.param("http://h/p?Password=hunter2&a=b", "http://h/p?Password=***&a=b", "hunter2", id="query-key-case-insensitive"),
    pytest.param("rtmp://h/app?key=k1&key=k2", "rtmp://h/app?key=***&key=***", "k1", id="query-key-repeated"),
    pytest.param("https://h/p?sig=1&signature=abc#frag", "https://h/p?sig=1&signature=***#frag", "abc", id="query-signature-keeps-fragment"),
    pytest.param("https://h/p?secret=&x=1", "https://h/p?secret=***&x=1", None, id="query-blank-secret"),
    pytest.param("rtsp://u:pw@h/x?auth=zz&ch=2", "rtsp://u:***@h/x?auth=***&ch=2", "zz", id="userinfo-and-query"),
    # nothing to hide: untouched, byte for byte
    pytest.param("https://h/p?x=1&y=%2F", "https://h/p?x=1&y=%2F", None, id="query-without-secret-untouched"),
    pytest.param("rtsp://cam.local:554/stream1", "rtsp://cam.local:554/stream1", None, id="no-credentials"),
    pytest.param("/data/clips/a.mp4", "/data/clips/a.mp4", None, id="absolute-path"),
    pytest.param("clips/a b.mp4", "clips/a b.mp4", None, id="relative-path"),
    pytest.param("file:///data/clips/a.mp4", "file:///data/clips/a.mp4", None, id="file-uri"),
    pytest.param("synthetic://shapes?seed=1&fps=15&width=640", "synthetic://shapes?seed=1&fps=15&width=640", None, id="synthetic"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "expected", "secret"), MASK_CASES)
def test_mask_uri(uri: str, expected: str, secret: str | None):
    masked = mask_uri(uri)
    assert masked == expected
    if secret is not None:
        assert secret not in masked


@pytest.mark.parametrize("uri", [c.values[0] for c in MASK_CASES])
def test_mask_uri_is_idempotent(uri: str):
    assert mask_uri(mask_uri(uri)) == mask_uri(uri)


def test_mask_uri_hides_query_secret_of_unparsable_uri():
    masked = mask_uri("http://[cam/x?token=s3cr3t")
    assert "s3cr3t" not in masked


def test_mask_uri_unparsable_uri_still_hides_userinfo():
    masked = mask_uri("http://admin:hunter2@[cam/x")
    assert "hunter2" not in masked
    assert masked == "http://admin:***@[cam/x"


def test_mask_uri_in_free_text():
    text = "OSError: [Errno 111] Connection refused: 'rtsp://user:secret@127.0.0.1:1/x?token=t0k'"
    masked = mask_uri(text)
    assert "secret" not in masked and "t0k" not in masked
    assert (
        masked
        == "OSError: [Errno 111] Connection refused: 'rtsp://user:***@127.0.0.1:1/x?token=***'"
    )


SCHEMES = [
    ("synthetic://shapes", "synthetic"),
    ("file:///a.mp4", "file"),
    ("clips/a.mp4", "file"),
    ("/abs/a.mp4", "file"),
    ("C:/videos/a.mp4", "file"),
    ("RTSP://cam/x", "rtsp"),
    ("rtsps://cam/x", "rtsps"),
    ("rtmp://h/app", "rtmp"),
    ("http://h/x", "http"),
    ("https://h/x", "https"),
]


@pytest.mark.parametrize(("uri", "scheme"), SCHEMES)
def test_scheme_of_and_check_scheme(uri: str, scheme: str):
    assert scheme_of(uri) == scheme
    assert check_scheme(uri) == scheme


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "rtps://x",
            "unsupported scheme 'rtps' (use one of: synthetic, file, rtsp, rtsps, rtmp, http, https)",
        ),
        (
            "udp://239.0.0.1:1234",
            "unsupported scheme 'udp' (use one of: synthetic, file, rtsp, rtsps, rtmp, http, https)",
        ),
    ],
)
def test_check_scheme_rejects(uri: str, message: str):
    with pytest.raises(ValueError) as info:
        check_scheme(uri)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("file:///data/a.mp4", Path("/data/a.mp4")),
        ("file://rel/a.mp4", Path("rel/a.mp4")),
        ("rel/a.mp4", Path("rel/a.mp4")),
        ("/abs/a.mp4", Path("/abs/a.mp4")),
    ],
)
def test_file_path(uri: str, path: Path):
    assert file_path(uri) == path
