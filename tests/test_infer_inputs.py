"""``tools/infer.py`` on a folder a user really has: every good file processed, every bad or
unsupported one named with its reason at the end (exit status 1 when any could not be read),
and no output overwriting another."""
import glob
import json
import os.path as osp
import shutil
import subprocess
import sys

import cv2

from mmrepvit.apis.infer import output_names

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FPN = osp.join(REPO, 'configs', 'demo', 'fpn_repvit_m1_1_demo.py')


def test_infer_tool_on_a_mixed_folder(demo_run, tmp_path):
    images = sorted(glob.glob(osp.join(demo_run['data_root'], 'ade', 'images', 'validation',
                                       '*.jpg')))
    folder = tmp_path / 'inputs'
    folder.mkdir()
    shutil.copy(images[0], folder / 'good.jpg')
    cv2.imwrite(str(folder / 'good.png'), cv2.imread(images[1]))  # same stem, another image
    shutil.copy(images[2], folder / 'zebra.jpg')  # sorted after the bad files
    (folder / 'empty.jpg').write_bytes(b'')
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 50)
    (folder / 'notes.txt').write_text('not an image')
    data = open(images[0], 'rb').read()
    (folder / 'half.jpg').write_bytes(data[:len(data) // 2])  # OpenCV decodes it, grey below
    out = tmp_path / 'out'
    result = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'infer.py'), str(folder),
                             FPN, '--weights', osp.join(demo_run['work_dir'], 'fpn', 'iter_3.pth'),
                             '--out-dir', str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    report = result.stdout
    assert f'processed 3 of 7 input files; wrote 6 files under {out}' in report, report
    assert f"{folder / 'empty.jpg'}: the file is empty (0 bytes)" in report
    assert f"{folder / 'broken.png'}: it could not be decoded (58 bytes" in report
    assert f"{folder / 'notes.txt'}: not an image" in report
    assert f"{folder / 'half.jpg'}: the JPEG is truncated" in report
    preds = {osp.basename(p): json.load(open(p)) for p in glob.glob(str(out / 'preds' / '*'))}
    assert sorted(preds) == ['good.jpg.json', 'good.png.json', 'zebra.json']
    assert preds['good.jpg.json']['image'] == str(folder / 'good.jpg')
    assert preds['good.png.json']['image'] == str(folder / 'good.png')
    assert sorted(osp.basename(p) for p in glob.glob(str(out / 'vis' / '*'))) == \
        ['good.jpg.png', 'good.png.png', 'zebra.png']


def test_output_names_never_collide():
    names = output_names(['d/a.jpg', 'd/a.png', 'd/b.jpg', 'e/b.jpg', 'd/c.tar.jpg',
                          'd/c.tar.png', 'd/c.tar'])
    assert len(set(names.values())) == len(names)
    assert names['d/a.jpg'] == 'a.jpg' and names['d/a.png'] == 'a.png'
