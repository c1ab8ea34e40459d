//! The two files of a merchant's day (MARKETPLACE.md §10), written in one
//! pass over its rows, each row streamed to disk as it is read:
//! - txt: UTF-8 without BOM, the header line, `|` between fields, LF after
//!   every line (so a final newline); a field never holds `|`, CR or LF;
//! - xlsx: one sheet `reconciliation`, row 1 the header, then the same rows;
//!   `amount` and `line` numbers, the rest text, no formulas. rust_xlsxwriter's
//!   constant-memory mode writes each row to a temporary file beside the
//!   output as soon as the next row starts.
//!
//! Both are written under temporary names, synced, then renamed into place:
//! a file that has its name is whole.

use std::{
    borrow::Cow,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use rust_xlsxwriter::{Workbook, XlsxError};

use super::rows::{COLUMNS, Cell, Row};
use crate::flows::Error;

/// The sheet's name.
pub const SHEET: &str = "reconciliation";

/// Rows an xlsx sheet holds below its header.
pub const MAX_SHEET_ROWS: u64 = 1_048_575;

/// A txt field: `|`, CR and LF (refused by the API in every text it takes) become spaces.
fn txt_field(text: &str) -> Cow<'_, str> {
    if text.contains(['|', '\r', '\n']) {
        Cow::Owned(text.replace(['|', '\r', '\n'], " "))
    } else {
        Cow::Borrowed(text)
    }
}

/// The txt file, written through a buffer.
pub struct TxtWriter<W: Write> {
    out: W,
}

impl<W: Write> TxtWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(COLUMNS.join("|").as_bytes())?;
        out.write_all(b"\n")?;
        Ok(TxtWriter { out })
    }

    pub fn row(&mut self, row: &Row) -> std::io::Result<()> {
        for (i, cell) in row.cells().into_iter().enumerate() {
            if i > 0 {
                self.out.write_all(b"|")?;
            }
            match cell {
                Some(Cell::Text(t)) => self.out.write_all(txt_field(t).as_bytes())?,
                Some(Cell::Number(n)) => write!(self.out, "{n}")?,
                None => {}
            }
        }
        self.out.write_all(b"\n")
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The xlsx file: a workbook whose one sheet keeps constant memory.
pub struct XlsxWriter {
    book: Workbook,
    next_row: u32,
}

impl XlsxWriter {
    /// `scratch`: where the sheet's rows wait until the workbook is saved.
    pub fn new(scratch: &Path) -> Result<Self, XlsxError> {
        let mut book = Workbook::new();
        book.set_tempdir(scratch)?;
        let sheet = book.add_worksheet_with_constant_memory();
        sheet.set_name(SHEET)?;
        for (col, name) in COLUMNS.iter().enumerate() {
            sheet.write_string(0, col as u16, *name)?;
        }
        Ok(XlsxWriter { book, next_row: 1 })
    }

    pub fn row(&mut self, row: &Row) -> Result<(), XlsxError> {
        if u64::from(self.next_row) > MAX_SHEET_ROWS {
            return Err(XlsxError::RowColumnLimitError);
        }
        let at = self.next_row;
        let sheet = self.book.worksheet_from_index(0)?;
        for (col, cell) in row.cells().into_iter().enumerate() {
            match cell {
                // Amounts are ≤ 10^13 in magnitude: exact in an f64.
                Some(Cell::Number(n)) => sheet.write_number(at, col as u16, n as f64)?,
                Some(Cell::Text(t)) => sheet.write_string(at, col as u16, t)?,
                None => sheet,
            };
        }
        self.next_row += 1;
        Ok(())
    }

    pub fn save(mut self, path: &Path) -> Result<(), XlsxError> {
        self.book.save(path)
    }
}

/// Where a merchant's files of a day live, under `dir` (the day's folder).
#[derive(Debug, Clone)]
pub struct Paths {
    pub txt: PathBuf,
    pub xlsx: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path, merchant: &str) -> Paths {
        Paths { txt: dir.join(format!("{merchant}.txt")), xlsx: dir.join(format!("{merchant}.xlsx")) }
    }
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn io_failed(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |error| {
        tracing::error!(%error, what, "reconciliation file could not be written");
        Error::internal()
    }
}

fn xlsx_failed(error: XlsxError) -> Error {
    tracing::error!(%error, "reconciliation xlsx could not be written");
    Error::internal()
}

/// Writes both files of `paths` from the rows `produce` hands to its sink,
/// under temporary names, syncs them, then renames them into place; returns
/// the row count `produce` returned.
pub fn write_both(
    paths: &Paths,
    produce: impl FnOnce(&mut dyn FnMut(&Row) -> Result<(), Error>) -> Result<u64, Error>,
) -> Result<u64, Error> {
    let dir = paths.txt.parent().ok_or_else(Error::internal)?;
    std::fs::create_dir_all(dir).map_err(io_failed("folder"))?;
    let (txt_tmp, xlsx_tmp) = (temporary(&paths.txt), temporary(&paths.xlsx));
    let file = File::create(&txt_tmp).map_err(io_failed("txt"))?;
    let mut txt = TxtWriter::new(BufWriter::with_capacity(64 * 1024, file)).map_err(io_failed("txt"))?;
    let mut xlsx = XlsxWriter::new(dir).map_err(xlsx_failed)?;
    let rows = produce(&mut |row| {
        txt.row(row).map_err(io_failed("txt"))?;
        xlsx.row(row).map_err(xlsx_failed)
    })?;
    let file =
        txt.finish().map_err(io_failed("txt"))?.into_inner().map_err(|e| io_failed("txt")(e.into_error()))?;
    file.sync_all().map_err(io_failed("txt"))?;
    xlsx.save(&xlsx_tmp).map_err(xlsx_failed)?;
    File::open(&xlsx_tmp).and_then(|f| f.sync_all()).map_err(io_failed("xlsx"))?;
    std::fs::rename(&txt_tmp, &paths.txt).map_err(io_failed("txt"))?;
    std::fs::rename(&xlsx_tmp, &paths.xlsx).map_err(io_failed("xlsx"))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_failed("folder"))?;
    Ok(rows)
}
