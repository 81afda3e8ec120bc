"""``aging fetch``: "photo a day" videos -> aligned, age-labelled faces.

* :mod:`aging.fetch.download`: yt-dlp download, cached in the subject's folder;
* :mod:`aging.fetch.frames`: streaming cut and de-duplication of a video into distinct photos;
* :mod:`aging.fetch.align`: dlib faces and landmarks, face checks, FFHQ crop, stabilisation;
* :mod:`aging.fetch.manifest`, :mod:`aging.fetch.contact_sheet`: the review files;
* :mod:`aging.fetch.pipeline`: the whole stage for one video (:func:`fetch_video`).

Importing this package is cheap; OpenCV and dlib are imported by the modules that use them.
"""
