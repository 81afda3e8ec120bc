"""configs/videos.toml -> VideoConfig: ages, times, exclude lists, and errors that name the video."""

from pathlib import Path

import pytest

from aging.fetch.config import ConfigError, PhotoNumbers, VideoConfigError, load_videos, parse_video

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    p = tmp_path / "videos.toml"
    p.write_text(text)
    return p


def test_ages_every_way_of_giving_them():
    v = parse_video({"name": "a", "url": "x.mp4", "start_age": "20y", "days_per_photo": 2})
    assert v.start_age_days == 7305 and v.ages(3) == [7305, 7307, 7309]
    v = parse_video({"name": "a", "url": "x.mp4", "start_age": 100, "end_age": 120})
    assert v.ages(5) == [100, 105, 110, 115, 120] and v.ages(1) == [100]
    v = parse_video({"name": "a", "url": "x.mp4", "birth_date": "2000-01-01", "first_photo_date": "2000-01-11",
                     "days_per_photo": "1d"})
    assert v.start_age_days == 10
    with pytest.raises(VideoConfigError, match="distinct whole-day ages"):
        parse_video({"name": "a", "url": "x.mp4", "start_age": 100, "end_age": 102}).ages(5)


def test_fields_parsed(tmp_path):
    p = write(tmp_path, """
[[video]]
name = "hugo"
url = "https://www.youtube.com/watch?v=65nfbW-27ps"
birth_date = 1999-03-01
first_photo_date = 2011-03-01
last_photo_date = 2019-03-01
start_time = "1:02.5"
end_time = 400
decimate = 3
exclude = [4, "10-12", 4]
stabilise = false
cutoff = 0.1
check = ["start_time"]
""")
    videos, errors = load_videos(p)
    assert errors == []
    (v,) = videos
    assert v.subject == "hugo" and not v.is_local and v.stabilise is False
    assert v.start_age_days == 4383 and v.end_age_days == 7305
    assert v.start_time == 62.5 and v.end_time == 400.0
    assert v.decimate == 3 and list(v.exclude) == [4, 10, 11, 12] and v.check == ("start_time",)
    assert v.exclude.ranges == ((4, 4), (10, 12)) and v.exclude.as_list() == [4, "10-12"]
    assert v.cutoff == 0.1 and v.tolerance is None


@pytest.mark.parametrize("entry, message", [
    ({"name": "b", "start_age": 1, "days_per_photo": 1}, "video 'b': missing field 'url'"),
    ({"name": "b", "url": "v.mp4", "days_per_photo": 1}, "video 'b': missing field 'start_age'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1}, "video 'b': missing field 'days_per_photo'"),
    ({"name": "b", "url": "v.mp4", "birth_date": "2000-01-01", "days_per_photo": 1},
     "video 'b': missing field 'first_photo_date'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "exlude": [3]},
     "video 'b': unknown field 'exlude'"),
    ({"name": "b", "url": "v.mp4", "start_age": "ten", "days_per_photo": 1}, "video 'b': field 'start_age'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "exclude": ["x"]},
     "video 'b': field 'exclude'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "decimate": 0},
     "video 'b': field 'decimate'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "cutoff": 15},
     "video 'b': field 'cutoff' must be a number between 0 and 1"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "start_time": 9, "end_time": 3},
     "video 'b': 'end_time' is not after"),
    # numbers that parse but mean nothing: one line, never an OverflowError or a MemoryError
    ({"name": "b", "url": "v.mp4", "start_age": float("inf"), "days_per_photo": 1}, "field 'start_age'"),
    ({"name": "b", "url": "v.mp4", "start_age": float("nan"), "days_per_photo": 1}, "field 'start_age'"),
    ({"name": "b", "url": "v.mp4", "start_age": "9" * 400, "days_per_photo": 1}, "field 'start_age'"),
    ({"name": "b", "url": "v.mp4", "start_age": 2 ** 62, "days_per_photo": 1}, "field 'start_age'.*years"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "end_age": float("inf")}, "field 'end_age'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": float("inf")}, "field 'days_per_photo'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": float("nan")}, "field 'days_per_photo'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "start_time": float("nan")},
     "field 'start_time'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "end_time": float("inf")},
     "field 'end_time'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "start_time": "1:nan"},
     "field 'start_time'"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "exclude": ["40-4200000000"]},
     "field 'exclude': range '40-4200000000' spans"),
    ({"name": "b", "url": "v.mp4", "start_age": 1, "days_per_photo": 1, "exclude": ["1-" + "9" * 5000]},
     "field 'exclude'"),
    ({"name": "b", "url": "v.mp4", "birth_date": "2000-01-01", "first_photo_date": [1], "days_per_photo": 1},
     "field 'first_photo_date'"),
])
def test_errors_name_video_and_field(entry, message):
    with pytest.raises(VideoConfigError, match=message) as info:
        parse_video(entry)
    assert info.value.name == "b" and "\n" not in str(info.value)


def test_exclude_ranges_stay_ranges():
    v = parse_video({"name": "a", "url": "x.mp4", "start_age": 1, "days_per_photo": 1,
                     "exclude": [7, "0-999999", "999990-1000005", 1_000_007, 3]})
    assert v.exclude.ranges == ((0, 1_000_005), (1_000_007, 1_000_007))
    assert 0 in v.exclude and 1_000_005 in v.exclude and 1_000_006 not in v.exclude and None not in v.exclude
    assert 1_000_007 in v.exclude and 1_000_008 not in v.exclude and len(v.exclude) == 1_000_007
    assert PhotoNumbers.from_ranges([(5, 6), (1, 2), (3, 3)]).ranges == ((1, 3), (5, 6))
    assert 4 not in PhotoNumbers.from_ranges([(5, 6), (1, 2), (3, 3)]) and not PhotoNumbers()


def test_one_bad_video_does_not_spoil_the_others(tmp_path):
    p = write(tmp_path, """
[[video]]
name = "good"
url = "a.mp4"
start_age = "20y"
days_per_photo = 1

[[video]]
name = "bad"
url = "b.mp4"
days_per_photo = 1

[[video]]
url = "c.mp4"
start_age = 3
days_per_photo = 1

[[video]]
name = "twin"
subject = "good"
url = "d.mp4"
start_age = 3
days_per_photo = 1
""")
    videos, errors = load_videos(p)
    assert [v.name for v in videos] == ["good"]
    msgs = [str(e) for e in errors]
    assert msgs[0] == f"{p}: video 'bad': missing field 'start_age' (or 'birth_date' + 'first_photo_date')"
    assert "video '#3': missing field 'name'" in msgs[1]
    assert "video 'twin': subject 'good'" in msgs[2]


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_videos(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_videos(write(tmp_path, "[[video]\nname = 1"))
    with pytest.raises(ConfigError, match=r"no \[\[video\]\] tables"):
        load_videos(write(tmp_path, "\n"))
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[[video]]\nname = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_videos(bad)
    with pytest.raises(ConfigError, match="unknown key 'videos'"):
        load_videos(write(tmp_path, "[[videos]]\nname = 'a'\n"))
    with pytest.raises(ConfigError, match="is a folder"):
        load_videos(tmp_path)


def test_local_paths_relative_to_cwd_then_config(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "clip.mp4").write_bytes(b"x")
    p = tmp_path / "cfg" / "videos.toml"
    p.write_text('[[video]]\nname = "a"\nurl = "clip.mp4"\nstart_age = 1\ndays_per_photo = 1\n')
    monkeypatch.chdir(tmp_path)
    (v,), _ = load_videos(p)
    assert v.is_local and v.local_path() == p.parent / "clip.mp4"
    assert parse_video({"name": "a", "url": "file:///x/y.mp4", "start_age": 1, "days_per_photo": 1}).is_local


def test_shipped_study_config_loads():
    videos, errors = load_videos(REPO / "configs" / "videos.toml")
    assert errors == []
    ids = [v.url.rsplit("=", 1)[1] for v in videos]
    assert ids == ["LtpnjJlc4r8", "zuRd_Eneuk8", "65nfbW-27ps"]
    assert all(v.check for v in videos)  # unverified values stay marked for the user
