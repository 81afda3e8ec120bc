"""``aging fetch``: "photo a day" videos -> aligned, age-labelled faces.

* :mod:`aging.fetch.config`: ``configs/videos.toml`` -> :class:`~aging.fetch.config.VideoConfig`;
* :mod:`aging.fetch.options`: :class:`~aging.fetch.options.FetchOptions`, the stage's defaults;
* :mod:`aging.fetch.download`: yt-dlp download, cached in the subject's folder;
* :mod:`aging.fetch.frames`: streaming cut and de-duplication of a video into distinct photos,
  decimation;
* :mod:`aging.fetch.align`: dlib faces and landmarks, face checks, FFHQ crop, stabilisation;
* :mod:`aging.fetch.manifest`, :mod:`aging.fetch.contact_sheet`: the review files;
* :mod:`aging.fetch.pipeline`: the whole stage for one video (:func:`fetch_video`), in steps.

Importing this package is cheap (so are ``config`` and ``options``); OpenCV and dlib are imported
by the modules that use them.
"""
