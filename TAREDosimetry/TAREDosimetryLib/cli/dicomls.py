"""``tare-dosimetry dicom-ls``: the DICOM series of a folder, one line each, with their UIDs."""

from ..errors import InputError

HELP = "list the DICOM series of a folder (modality, type, size, description, SeriesInstanceUID)"


def add_parser(sub):
    p = sub.add_parser("dicom-ls", help=HELP,
                       description="List the DICOM series of a folder and its sub-folders, so that one can be chosen "
                       "with --series UID (run, evaluate). Reads only the file headers.")
    p.add_argument("folder", metavar="FOLDER")
    p.add_argument("--files", action="store_true", help="also list each series' files")
    return p


def main(args):
    import os

    from ..imaging.dicomseries import scan_dicom_folder, series_table

    if not os.path.isdir(args.folder):
        raise InputError(f"dicom-ls: {args.folder} is not a folder")
    series = scan_dicom_folder(args.folder)
    for line in series_table(series):
        print(line)
    for s in series:
        for note in s.notes[:1]:
            print(f"note: {note}")
        if args.files:
            print(f"{s.series_uid}:")
            for f in s.files:
                print(f"    {f}")
    return 0
