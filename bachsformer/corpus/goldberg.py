"""Fetching the Goldberg corpus: its file names and checksums, and writing files safely.

The corpus is data, never part of the repository, so users fetch it. Checksums are embedded here
(they are metadata, a few hundred bytes) so a truncated transfer, a changed upstream file or a
proxy's error page can never pass for the corpus. Every file is written atomically: it appears
under its final name only once it is complete and verified.
"""
from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ludovico_vae.files import atomic_write, sha256_file

from ..errors import CommandError, DownloadError

# Never trained on by any stage, so every held-out figure is about music the models never saw:
# a fughetta, a minor-mode canon and a piece in 18/16 against 3/4.
GOLDBERG_HELD_OUT = ("988-v10", "988-v15", "988-v26")
GOLDBERG_BASE_URL = "https://raw.githubusercontent.com/pier-maker92/bachsformer/main/data/midi"
TIMEOUT_S = 30.0
MAX_BYTES = 4 * 1024 * 1024  # each Goldberg file is under 40 kB; anything this large is not one
CHUNK_BYTES = 64 * 1024

# BWV 988, Aria and Variations 1-30, sequenced by David J. Grossman, as in the upstream repository.
GOLDBERG_SHA256 = {
    "988-aria.mid": "7eff1933588af996ac5db6a1bf535505ad5608005c5956740216d06985134ff4",
    "988-v01.mid": "b2628b4686c42e651dcefe6e19d228e1618e9c2e5ca9ac3e2cade2422968366b",
    "988-v02.mid": "13ec538793c2f472282b096c75c45fb94a0b1c55ce30283e8479d2347962a340",
    "988-v03.mid": "980a3cbf0066e632be3bee307d14e7f3d24a6c359ea4df51ffe01051589bb1d6",
    "988-v04.mid": "e57fe053be2612fe5d79c199bda5b6c59313e426098040634e40b568cf329327",
    "988-v05.mid": "768a0890fbb6a35fe921aea02c1708386844f7e57b99992f2281dc7d66be016f",
    "988-v06.mid": "08e1871220afc3005129084e41e52bf7ab97614fd8c285342111b0b115dd9054",
    "988-v07.mid": "eee005ffb82a081eb25d64d2d35b607f97e52000aa29b1591317805b025f30ea",
    "988-v08.mid": "5e01bd1efea3cef5fe81d77fda845c46191eeab961367a9f0b632c0c396101d4",
    "988-v09.mid": "bb35c33499dbe2308fd2230ddc6a75f3a1addbb9423add2d63b55e6cb9305fbd",
    "988-v10.mid": "af7c57007a2bd4f8d7a3a0cb0a614053ec95f901f39988f41feec8660e8cd5d3",
    "988-v11.mid": "0358869b6d585c81817c5d941564ea907f544584bf59dd99daa7efb227de6df3",
    "988-v12.mid": "28ad2b9f9b27583f9af27ae40fe76334cca7f4ef445786da098f3632acf3d359",
    "988-v13.mid": "ada31cd5a87223ff4bb92af974aaeebf6b9b5dfcd81b83e336d93d49e755dcb3",
    "988-v14.mid": "49272868e0e741c954efe3220b3a4541454e68ee04e3dd3991f675b13f12534a",
    "988-v15.mid": "329c7763b1652b6ba6347df9bdc793c551686b3e8ff497f6ae639d771d04eb5c",
    "988-v16.mid": "30391fa54712dae51d7815bf759f49d2c120df84bab14466eb6df0f86b89fb28",
    "988-v17.mid": "0989d0bedf508068decd47f77607269c83a8009f2798d88eec19a2488583ae84",
    "988-v18.mid": "65fd305ac682632c537f8984a58ad74672a15b1e087cdde3d5b03267c07837bf",
    "988-v19.mid": "bb81180f5ddd8b1271e5b9094500f6688e204e2104ee8342b0e5c93b888f956d",
    "988-v20.mid": "1a107ad645aa915e7c7ceaef5f0538eca998e030a0bcca9eeb32a5a170c4008a",
    "988-v21.mid": "b5be0fbc4c556ea1ccee8c03c0525f61f1a08cb06424b0ef120d6d3be0012c26",
    "988-v22.mid": "f18fe491953bf63c622dce82937095f0313d905fb5e18ed83b9b272eff73a31b",
    "988-v23.mid": "e6be032fe0d21893049b582e106563a9e13e9edc307717968eef74a4b67f5b17",
    "988-v24.mid": "4e894814ad2ed33f5dbc93f1c67e5d00487a5e30a9855f449bbf881e71ee9bbe",
    "988-v25.mid": "a2977f9dec4462819cf21cea77caf7ba3cd237574d179a322268896b37aadf5e",
    "988-v26.mid": "080981daabaa2e411b98e9d3d527d27490443376af35304f1c13ab55dceba311",
    "988-v27.mid": "18fcaf161c185c22519c44a3cd924363accf32c6eef54c92417d832db0ce3853",
    "988-v28.mid": "627ea176ffa6df70994f083ad0a94cf7472e6178eb9a72b86b4149263b8f1725",
    "988-v29.mid": "bb5b64b8fd9b542bc61b13b21549a289af0442595f455a9711d169259064babc",
    "988-v30.mid": "3c3e3fba704fea40b33063f4716455d7992394997b1ed0a3616d8f31273561ed",
}


def check_base_url(base_url: str) -> str:
    """The base URL without a trailing slash; only http(s) and file URLs are accepted."""
    scheme = urllib.parse.urlsplit(base_url).scheme
    if scheme not in ("http", "https", "file"):
        raise CommandError(f"--base-url must be an http, https or file URL, got {base_url!r}")
    return base_url.rstrip("/")


def download_verified(url: str, target: Path, sha256: str, timeout: float = TIMEOUT_S,
                      max_bytes: int = MAX_BYTES) -> int:
    """Fetch `url` into `target` if its content has checksum `sha256`; returns its size in bytes.

    Raises `DownloadError` naming the file; `target` is untouched unless the download is complete
    and verified.
    """
    name = target.name
    digest, size = hashlib.sha256(), 0
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(name, f"HTTP {e.code} {e.reason} from {url}") from None
    except urllib.error.URLError as e:
        reason = getattr(e.reason, "strerror", None) or e.reason
        missing = isinstance(e.reason, FileNotFoundError)  # a file:// URL's 404
        raise DownloadError(name, f"cannot reach {url} ({reason})", unreachable=not missing) from None
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(name, f"cannot reach {url} ({e or type(e).__name__})", unreachable=True) from None
    with response:
        try:
            with atomic_write(target) as out:
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as e:
                        reason = e or type(e).__name__
                        raise DownloadError(name, f"connection lost after {size} bytes ({reason})") from None
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(name, f"larger than {max_bytes} bytes, not the expected file")
                    digest.update(chunk)
                    out.write(chunk)
                if digest.hexdigest() != sha256:
                    raise DownloadError(name, f"checksum mismatch (got sha256 {digest.hexdigest()[:12]}..., "
                                              f"expected {sha256[:12]}...), file discarded")
        except OSError as e:
            raise DownloadError(name, f"cannot write {target} ({e.strerror or e})") from None
    return size


def fetch_goldberg(dest, base_url: str = GOLDBERG_BASE_URL, force: bool = False,
                   timeout: float = TIMEOUT_S, progress: bool = True) -> list:
    """Download the Goldberg files missing from `dest`; one result dict per file, in order.

    A file already present with the right checksum is kept; one with another checksum is kept
    too unless `force`, since it may be a user's own edit. Failures do not stop the other files,
    except when the server cannot be reached at all.
    """
    from tqdm import tqdm

    base_url = check_base_url(base_url)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise CommandError(f"{dest}: exists and is not a directory")
    dest.mkdir(parents=True, exist_ok=True)
    results, unreachable = [], None
    names = sorted(GOLDBERG_SHA256)
    for name in tqdm(names, desc="goldberg", unit="file", disable=None if progress else True):
        expected = GOLDBERG_SHA256[name]
        target = dest / name
        row = {"file": name, "status": "", "bytes": None, "sha256": expected, "error": None}
        results.append(row)
        if unreachable is not None:
            row.update(status="skipped", error=f"not tried: {unreachable}")
            continue
        if target.is_file():
            if sha256_file(target) == expected:
                row.update(status="present", bytes=target.stat().st_size)
                continue
            if not force:
                row.update(status="failed", error="exists with a different checksum; not replaced without --force")
                continue
        try:
            row.update(status="downloaded", bytes=download_verified(f"{base_url}/{name}", target, expected, timeout))
        except DownloadError as e:
            row.update(status="failed", error=e.reason)
            if e.unreachable:
                unreachable = e.reason
    return results
