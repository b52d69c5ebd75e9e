"""Source URIs: schemes, file paths and credential masking."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsa.uri import SECRET_QUERY_WORDS, check_scheme, file_path, mask_uri, scheme_of

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
    pytest.param("https://h/p?sig=1&signature=abc#frag", "https://h/p?sig=***&signature=***#frag", "abc", id="query-signature-keeps-fragment-sig-now-masked-contains-sig"),
    pytest.param("https://h/p?secret=&x=1", "https://h/p?secret=***&x=1", None, id="query-blank-secret"),
    pytest.param("rtsp://u:pw@h/x?auth=zz&ch=2", "rtsp://u:***@h/x?auth=***&ch=2", "zz", id="userinfo-and-query"),
    # nothing to hide: untouched, byte for byte
    pytest.param("https://h/p?x=1&y=%2F", "https://h/p?x=1&y=%2F", None, id="query-without-secret-untouched"),
    pytest.param("rtsp://cam.local:554/stream1", "rtsp://cam.local:554/stream1", None, id="no-credentials"),
    pytest.param("/data/clips/a.mp4", "/data/clips/a.mp4", None, id="absolute-path"),
    pytest.param("clips/a b.mp4", "clips/a b.mp4", None, id="relative-path"),
    pytest.param("file:///data/clips/a.mp4", "file:///data/clips/a.mp4", None, id="file-uri"),
    pytest.param("synthetic://shapes?seed=1&fps=15&width=640", "synthetic://shapes?seed=1&fps=15&width=640", None, id="synthetic"),
    # passwords holding characters legal in userinfo, or typed raw although illegal
    pytest.param("rtsp://u:%E2%82%AC%27%20x@cam/x", "rtsp://u:***@cam/x", "%E2%82%AC", id="percent-encoded-bytes"),
    pytest.param("rtsp://u:a@b:c@cam/x", "rtsp://u:***@cam/x", "a@b:c", id="at-and-colon-in-password"),
    pytest.param("rtsp://u:@@cam/x", "rtsp://u:***@cam/x", None, id="password-is-at"),
    pytest.param("rtsp://u:pa/ss@cam/x", "rtsp://u:***@cam/x", "pa/ss", id="raw-slash-in-password"),
    pytest.param("rtsp://u:pa?ss@cam/x?ch=1", "rtsp://u:***@cam/x?ch=1", "pa?ss", id="raw-question-in-password"),
    pytest.param("rtsp://u:pa#ss@cam/x", "rtsp://u:***@cam/x", "pa#ss", id="raw-hash-in-password"),
    pytest.param("rtsp://u:/pw@cam/x", "rtsp://u:***@cam/x", "/pw", id="password-starting-with-slash"),
    pytest.param("rtsp://u:p'w@[::1]:554/x", "rtsp://u:***@[::1]:554/x", "p'w", id="quote-in-password-ipv6"),
    pytest.param("rtsp://o'brien!:pw@cam/x", "rtsp://o'brien!:***@cam/x", "pw", id="sub-delims-in-user"),
    pytest.param("https://tok'en$@host/x", "https://***@host/x", "tok'en$", id="token-with-sub-delims"),
    pytest.param("rtsp://u:pw@cam", "rtsp://u:***@cam", "pw", id="no-path"),
    # secret query names: the name contains a secret word, any case, percent-decoded
    pytest.param("https://h/x?api_key=K1&v=2", "https://h/x?api_key=***&v=2", "K1", id="query-api_key"),
    pytest.param("https://b.s3.amazonaws.com/o?X-Amz-Credential=C1&X-Amz-Signature=S1&X-Amz-Expires=60", "https://b.s3.amazonaws.com/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60", "S1", id="query-X-Amz-Signature"),
    pytest.param("https://h/x?access_token=T1", "https://h/x?access_token=***", "T1", id="query-access_token"),
    pytest.param("https://h/x?sessionid=S1&a=1", "https://h/x?sessionid=***&a=1", "S1", id="query-sessionid"),
    pytest.param("https://h/x?AUTH=A1", "https://h/x?AUTH=***", "A1", id="query-AUTH-upper-case"),
    pytest.param("https://h/x?to%6Ben=T1", "https://h/x?to%6Ben=***", "T1", id="query-percent-encoded-name"),
    pytest.param("https://h/x?jwt=J1&otp=O1&ticket=T1&pwd=P1", "https://h/x?jwt=***&otp=***&ticket=***&pwd=***", "J1", id="query-more-secret-words"),
    pytest.param("https://h/x?a=1;token=T1;b=2", "https://h/x?a=1;token=***;b=2", "T1", id="query-semicolon-separator"),
    pytest.param("https://h/x?token=a=b?c/d@e&x=1", "https://h/x?token=***&x=1", "a=b?c/d@e", id="query-value-with-delimiters"),
    pytest.param("https://h/x?token", "https://h/x?token", None, id="query-secret-name-without-value"),
    pytest.param("https://h/cb#access_token=T1&state=s", "https://h/cb#access_token=***&state=s", "T1", id="fragment-params"),
    pytest.param("https://h/r?url=rtsp://u:P1@cam/x&ch=1", "https://h/r?url=rtsp://u:***@cam/x&ch=1", "P1", id="nested-uri-in-query"),
    pytest.param("https://proxy/rtsp://u:P1@cam/x", "https://proxy/rtsp://u:***@cam/x", "P1", id="nested-uri-in-path"),
    # '@' after the authority of a URI without credentials: a path, left alone
    pytest.param("https://medium.com/@user/post", "https://medium.com/@user/post", None, id="at-in-path"),
    pytest.param("http://h:8080/x@y", "http://h:8080/x@y", None, id="at-in-path-after-port"),
    pytest.param("http://[::1]:8080/x@y", "http://[::1]:8080/x@y", None, id="at-in-path-ipv6"),
    pytest.param("http://[::1]/x@y", "http://[::1]/x@y", None, id="at-in-path-ipv6-no-port"),
    pytest.param("rtsp://@cam/x", "rtsp://@cam/x", None, id="empty-userinfo"),
]  # fmt: skip

SUB_DELIM_CASES = [
    pytest.param(f"rtsp://u:pa{c}ss@cam/x", "rtsp://u:***@cam/x", f"pa{c}ss", id=f"sub-delim-{c}")
    for c in "!$&'()*+,;="
]
MASK_CASES += SUB_DELIM_CASES


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


FREE_TEXT_CASES = [
    pytest.param("Server returned 401: 'rtsp://u:it's@h/x'", "Server returned 401: 'rtsp://u:***@h/x'", id="quote-in-password-quoted"),
    pytest.param("error opening 'https://h/x?token=T1': 401", "error opening 'https://h/x?token=***': 401", id="quoted-query-secret-keeps-quote"),
    pytest.param("failed (rtsp://u:P1@h/x?key=K1), retrying", "failed (rtsp://u:***@h/x?key=***), retrying", id="parenthesised"),
    pytest.param("a rtsp://u:P1@h/x and rtsp://v:P2@g/y?sig=S1 b", "a rtsp://u:***@h/x and rtsp://v:***@g/y?sig=*** b", id="two-uris"),
    pytest.param("\"rtsp://u:P1@h/x\"<https://t0k@h/y>", "\"rtsp://u:***@h/x\"<https://***@h/y>", id="double-quotes-and-angle-brackets"),
    pytest.param("x=1rtsp://u:P1@h/x", "x=1rtsp://u:***@h/x", id="glued-to-a-word"),
    pytest.param("see https://h/docs?page=2.", "see https://h/docs?page=2.", id="nothing-to-hide"),
    pytest.param("error opening 'https://h/x?token=T1'", "error opening 'https://h/x?token=***'", id="quoted-at-end"),
    pytest.param("error opening 'https://h/x?token=T1'b", "error opening 'https://h/x?token=***", id="quote-inside-value-not-a-closer"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), FREE_TEXT_CASES)
def test_mask_uri_free_text_table(text: str, expected: str):
    masked = mask_uri(text)
    assert masked == expected
    assert "P1" not in masked and "P2" not in masked
    assert mask_uri(masked) == masked


def test_secret_query_words_are_the_documented_list():
    assert SECRET_QUERY_WORDS == (
        "token", "key", "secret", "pass", "pwd", "sig", "auth", "cred", "session", "jwt", "ticket", "otp",
    )  # fmt: skip
    for word in SECRET_QUERY_WORDS:
        assert word in mask_uri.__doc__


def test_mask_uri_survives_absurd_nesting():
    masked = mask_uri("a://" * 2000 + "u:P1@h")
    assert "P1" not in masked


# -- properties ----------------------------------------------------------------------------------
# Passwords and secret values hold a marker in capitals; everything else is drawn from alphabets
# without capitals, so the marker can only show up in the output by leaking.
PW_MARK, VALUE_MARK = "PWQZ", "VQZK"
_LOWER = string.ascii_lowercase + string.digits
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_SUB_DELIMS = "!$&'()*+,;="
_pct = st.integers(0, 255).map(lambda b: f"%{b:02X}")
_pct_lower = st.integers(0, 255).map(lambda b: f"%{b:02x}")


def _joined(chars: st.SearchStrategy[str], min_size: int = 0, max_size: int = 12):
    return st.lists(chars, min_size=min_size, max_size=max_size).map("".join)


def _marked(chars: st.SearchStrategy[str], mark: str):
    return st.tuples(_joined(chars), _joined(chars)).map(lambda t: t[0] + mark + t[1])


_passwords = _marked(st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS + ":"), _pct), PW_MARK)
_tokens = _marked(st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS), _pct), PW_MARK)
_users = _joined(st.one_of(st.sampled_from(_LOWER + "-._~" + _SUB_DELIMS), _pct_lower))
_hosts = st.tuples(
    st.one_of(
        _joined(st.sampled_from(_LOWER + "-."), min_size=1),
        st.sampled_from(["10.0.0.5", "[::1]", "[fe80::1%25eth0]", "cam.local"]),
    ),
    st.sampled_from(["", ":554", ":8554"]),
).map("".join)
# no empty segment, so no '//' and no 'x://' that would start a URI inside the path
_segments = _joined(st.one_of(st.sampled_from(_LOWER + "-._~" + _SUB_DELIMS + ":@"), _pct_lower), 1)
_paths = st.lists(_segments, max_size=4).map(lambda segs: "".join("/" + s for s in segs))
_plain_names = _joined(st.sampled_from(string.ascii_lowercase + "_-"), 1, 8).filter(
    lambda n: not any(word in n for word in SECRET_QUERY_WORDS)
)
_plain_values = _joined(st.sampled_from(_LOWER + "-._~!$'()*+,=:@"))
_secret_words = st.sampled_from(SECRET_QUERY_WORDS).flatmap(
    lambda w: st.tuples(*[st.sampled_from([c, c.upper()]) for c in w]).map("".join)
)
_secret_names = st.tuples(
    _joined(st.sampled_from(string.ascii_lowercase + "_-"), 0, 4),
    _secret_words,
    _joined(st.sampled_from(string.ascii_lowercase + "_-"), 0, 4),
).map("".join)
_secret_values = _marked(
    st.sampled_from(_UNRESERVED + "!$'()*+,=:@/?"), VALUE_MARK
)  # a query value holds any pchar, '/' and '?', but no '&', ';' or '#'
_schemes = st.sampled_from(["rtsp", "rtsps", "rtmp", "http", "https"])


@st.composite
def _query(draw, secret: bool) -> tuple[str, str, list[str]]:
    """(query, the same query masked, the secret values) with a leading '?' unless empty."""
    params: list[tuple[str, str, bool]] = [
        (draw(_plain_names), draw(_plain_values), False) for _ in range(draw(st.integers(0, 3)))
    ]
    if secret:
        for _ in range(draw(st.integers(1, 3))):
            index = draw(st.integers(0, len(params)))
            params.insert(index, (draw(_secret_names), draw(_secret_values), True))
    if not params:
        return "", "", []
    sep = draw(st.sampled_from(["&", ";"]))
    query = "?" + sep.join(f"{n}={v}" for n, v, _ in params)
    masked = "?" + sep.join(f"{n}={'***' if s else v}" for n, v, s in params)
    return query, masked, [v for _, v, s in params if s]


def _assert_hidden(masked: str, secrets: list[str]):
    for secret in secrets:
        assert secret not in masked
    assert PW_MARK not in masked and VALUE_MARK not in masked


@settings(max_examples=300, deadline=None)
@given(
    scheme=_schemes,
    user=_users,
    password=_passwords,
    host=_hosts,
    path=_paths,
    query=st.booleans().flatmap(_query),
)
def test_mask_uri_never_shows_a_password(scheme, user, password, host, path, query):
    query_text, query_masked, values = query
    uri = f"{scheme}://{user}:{password}@{host}{path}{query_text}"
    expected = f"{scheme}://{user}:***@{host}{path}{query_masked}"
    assert mask_uri(uri) == expected
    _assert_hidden(mask_uri(uri), [password, *values])
    text = f"error opening '{uri}': 401"
    assert mask_uri(text) == f"error opening '{expected}': 401"
    _assert_hidden(mask_uri(text), [password, *values])


@settings(max_examples=300, deadline=None)
@given(scheme=_schemes, token=_tokens, host=_hosts, path=_paths, query=_query(secret=True))
def test_mask_uri_never_shows_a_token_or_secret_value(scheme, token, host, path, query):
    query_text, query_masked, values = query
    for uri, expected in [
        (
            f"{scheme}://{token}@{host}{path}{query_text}",
            f"{scheme}://***@{host}{path}{query_masked}",
        ),
        (f"{scheme}://{host}{path}{query_text}", f"{scheme}://{host}{path}{query_masked}"),
    ]:
        assert mask_uri(uri) == expected
        text = f"Server returned 401: '{uri}'"
        assert mask_uri(text) == f"Server returned 401: '{expected}'"
        _assert_hidden(mask_uri(uri) + mask_uri(text), [token, *values])


@settings(max_examples=300, deadline=None)
@given(scheme=_schemes, host=_hosts, path=_paths, query=_query(secret=False))
def test_mask_uri_keeps_a_uri_without_credentials(scheme, host, path, query):
    uri = f"{scheme}://{host}{path}{query[0]}"
    assert mask_uri(uri) == uri
    text = f"error opening '{uri}': 401"
    assert mask_uri(text) == text


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


@pytest.mark.parametrize(
    ("uri", "secret"),
    [
        ('rtsp://admin:ab"cd@cam/s', 'ab"cd'),
        ("rtsp://admin:ab cd@cam/s?token=tok3n", "ab cd"),
        ("rtsp://admin:a<b>{c}|d^e`f\\g@cam/s", "a<b>{c}|d^e`f\\g"),
        ("http://h/live?api_key=has space", "has space"),
    ],
)
def test_a_source_uri_is_masked_whole_whatever_its_password_holds(uri, secret):
    """A run file's URI is one URI: characters that end a URI in free text do not end it."""
    from vsa.secrets import needs_sealing
    from vsa.uri import mask_source_uri

    masked = mask_source_uri(uri)
    assert secret not in masked and "tok3n" not in masked, masked
    assert needs_sealing(uri)
    assert mask_source_uri("rtsp://cam.local:554/s") == "rtsp://cam.local:554/s"
