"""The web UI's interface text in English and Bahasa Indonesia, and how a request picks one.

One table, ``STRINGS``: key → (English, Indonesian). Templates call ``t("key")``; the
browser-side scripts get the ``js_*`` keys as JSON. The language comes from ``?lang=`` (the
switch in the page header, which also sets the ``peluk_lang`` cookie), else that cookie, else
the browser's ``Accept-Language``; English by default.

>>> pick("id", None, "en-US,en;q=0.9")
'id'
>>> pick(None, None, "en;q=0.5, id-ID;q=0.8")
'id'
>>> translate("id")("models")
'Model'
"""

from __future__ import annotations

LANGUAGES = {"en": "English", "id": "Bahasa Indonesia"}
DEFAULT = "en"

STRINGS: dict[str, tuple[str, str]] = {
    # page chrome
    "models": ("Models", "Model"),
    "datasets": ("Datasets", "Dataset"),
    "playground": ("Playground", "Uji coba"),
    "api_docs": ("API docs", "Dokumentasi API"),
    "search": ("Search", "Cari"),
    "search_placeholder": ("Search models", "Cari model"),
    "login": ("Log in", "Masuk"),
    "logout": ("Log out", "Keluar"),
    "signed_in_as": ("Signed in as", "Masuk sebagai"),
    "language": ("Language", "Bahasa"),
    "footer": ("peluk: a self-hosted, offline Hugging Face stack",
               "peluk: tumpukan Hugging Face swakelola, tanpa internet"),
    # home and lists
    "welcome": ("Models and datasets on this hub", "Model dan dataset di hub ini"),
    "recent_models": ("Recently updated models", "Model yang baru diperbarui"),
    "recent_datasets": ("Recently updated datasets", "Dataset yang baru diperbarui"),
    "see_all": ("See all", "Lihat semua"),
    "sort": ("Sort", "Urutkan"),
    "sort_lastModified": ("Recently updated", "Baru diperbarui"),
    "sort_downloads": ("Most downloads", "Paling banyak diunduh"),
    "sort_likes": ("Most likes", "Paling disukai"),
    "sort_createdAt": ("Recently created", "Baru dibuat"),
    "sort_id": ("Name", "Nama"),
    "filter_pipeline_tag": ("Tasks", "Tugas"),
    "filter_library": ("Libraries", "Pustaka"),
    "filter_language": ("Languages", "Bahasa"),
    "filter_filter": ("Other tags", "Tag lain"),
    "clear_filters": ("Clear filters", "Hapus filter"),
    "no_results": ("Nothing matches.", "Tidak ada yang cocok."),
    "results": ("results", "hasil"),
    "previous": ("Previous", "Sebelumnya"),
    "next": ("Next", "Berikutnya"),
    "updated": ("Updated", "Diperbarui"),
    "downloads": ("Downloads", "Unduhan"),
    # repository pages
    "private": ("private", "privat"),
    "gated": ("gated", "terbatas"),
    "model_card": ("Model card", "Kartu model"),
    "dataset_card": ("Dataset card", "Kartu dataset"),
    "files": ("Files and versions", "Berkas dan versi"),
    "commits": ("Commits", "Commit"),
    "branches": ("Branches", "Cabang"),
    "tags": ("Tags", "Tag"),
    "pull_requests": ("Pull requests", "Pull request"),
    "explore": ("Explore", "Jelajahi"),
    "no_card": ("This repository has no card (README.md) yet.", "Repositori ini belum memiliki kartu (README.md)."),
    "served_only": ("Served by this server from local files: it is not a repository of this hub.",
                    "Dilayani server ini dari berkas lokal: bukan repositori di hub ini."),
    "name": ("Name", "Nama"),
    "size": ("Size", "Ukuran"),
    "download": ("Download", "Unduh"),
    "lfs_title": ("Stored with Git LFS", "Disimpan dengan Git LFS"),
    "branch": ("Branch", "Cabang"),
    "commit_count": ("commits", "commit"),
    "authored": ("committed", "di-commit"),
    "empty_folder": ("This folder is empty.", "Folder ini kosong."),
    "binary_file": ("This file is binary and is not shown.", "Berkas ini biner dan tidak ditampilkan."),
    "large_file": ("This file is too large to show here.", "Berkas ini terlalu besar untuk ditampilkan di sini."),
    "lfs_file": ("This file is stored with Git LFS.", "Berkas ini disimpan dengan Git LFS."),
    "raw": ("Raw", "Mentah"),
    "gated_message": ("This repository is gated: its files are for its owner only.",
                      "Repositori ini terbatas: berkasnya hanya untuk pemiliknya."),
    # login
    "login_title": ("Log in with an access token", "Masuk dengan token akses"),
    "login_help": ("Paste a token of this hub (peluk hub token create --user NAME). It is kept in a cookie of this "
                   "browser only.", "Tempel token hub ini (peluk hub token create --user NAMA). Token disimpan dalam "
                   "cookie peramban ini saja."),
    "token": ("Access token", "Token akses"),
    "bad_token": ("This token is not valid on this hub.", "Token ini tidak berlaku di hub ini."),
    # errors
    "not_found": ("Not found", "Tidak ditemukan"),
    "not_found_message": ("There is nothing here, or it is private: log in to see your private repositories.",
                          "Tidak ada apa-apa di sini, atau halaman ini privat: masuk untuk melihat repositori "
                          "privat Anda."),
    "forbidden": ("Access denied", "Akses ditolak"),
    "bad_request": ("Bad request", "Permintaan tidak valid"),
    "server_error": ("Something went wrong", "Terjadi kesalahan"),
    "back_home": ("Back to the home page", "Kembali ke beranda"),
    # inference widgets and the playground
    "inference": ("Inference", "Inferensi"),
    "task": ("Task", "Tugas"),
    "compute": ("Compute", "Hitung"),
    "send": ("Send", "Kirim"),
    "clear": ("Clear", "Bersihkan"),
    "text": ("Text", "Teks"),
    "question": ("Question", "Pertanyaan"),
    "context": ("Context", "Konteks"),
    "candidate_labels": ("Candidate labels (comma separated)", "Label kandidat (pisahkan dengan koma)"),
    "source_sentence": ("Source sentence", "Kalimat sumber"),
    "sentences": ("Sentences to compare (one per line)", "Kalimat pembanding (satu per baris)"),
    "mask_hint": ("Use {mask} where a word is missing.", "Gunakan {mask} di tempat kata yang hilang."),
    "chat_placeholder": ("Type a message…", "Ketik pesan…"),
    "playground_title": ("Models served here", "Model yang dilayani di sini"),
    "playground_help": ("Every model below answers on the inference API; open one to try it in its widget.",
                        "Setiap model di bawah menjawab lewat API inferensi; buka salah satunya untuk mencobanya."),
    "loaded": ("in memory", "di memori"),
    "no_widget": ("This model has no inference widget on this server.",
                  "Model ini tidak memiliki widget inferensi di server ini."),
    # the Explore tab
    "explore_title": ("Explore the attention of every layer and head", "Jelajahi atensi setiap lapisan dan head"),
    "explore_help": ("Runs the model once on your text and shows where each token looks: the head view, the model "
                     "view (every layer × head) and heat maps.",
                     "Menjalankan model sekali pada teks Anda dan menampilkan ke mana setiap token memperhatikan: "
                     "tampilan head, tampilan model (setiap lapisan × head) dan peta panas."),
    "text_pair": ("Second text (optional)", "Teks kedua (opsional)"),
    "explore_neurons": ("Also the queries and keys (neuron view)", "Sertakan juga query dan key (tampilan neuron)"),
    "target": ("Target text (optional; generated when empty)", "Teks target (opsional; dibuat otomatis jika kosong)"),
    "run": ("Run", "Jalankan"),
    # strings for the scripts (static/widgets.js, static/explore.js)
    "js_loading": ("Computing…", "Menghitung…"),
    "js_error": ("Error", "Galat"),
    "js_answer": ("Answer", "Jawaban"),
    "js_score": ("score", "skor"),
    "js_you": ("You", "Anda"),
    "js_model": ("Model", "Model"),
    "js_rendered": ("Rendered in {ms} ms ({tokens} tokens, {layers} layers × {heads} heads)",
                    "Digambar dalam {ms} ms ({tokens} token, {layers} lapisan × {heads} head)"),
    "js_login": ("This server needs a token: log in first.", "Server ini memerlukan token: masuk dulu."),
}


def pick(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language of a request: ``?lang=``, else the cookie, else Accept-Language (by q), else English."""
    for choice in (query, cookie):
        if choice in LANGUAGES:
            return choice
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        base = "id" if base == "in" else base  # the old code of Indonesian
        if base in LANGUAGES and q > 0:
            ranked.append((-q, i, base))
    return min(ranked)[2] if ranked else DEFAULT


def translate(lang: str):
    """``t(key, **values)`` for one language; unknown keys come back as themselves (easy to spot)."""
    column = 1 if lang == "id" else 0

    def t(key: str, **values) -> str:
        text = STRINGS[key][column] if key in STRINGS else key
        return text.format(**values) if values else text
    return t


def script_strings(lang: str) -> dict[str, str]:
    """The ``js_*`` strings of ``lang``, for the browser-side scripts (keys without the prefix)."""
    column = 1 if lang == "id" else 0
    return {k[3:]: v[column] for k, v in STRINGS.items() if k.startswith("js_")}
