//! Records: the plain values a batch carries.

use bytes::Bytes;

/// One record header: a key (UTF-8 by convention, kept as bytes) and an optional value.
/// Keys may repeat within a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header key.
    pub key: Bytes,
    /// Header value; `None` is a null value.
    pub value: Option<Bytes>,
}

/// One record as a producer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone under compaction).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// A record without headers.
    pub fn new(timestamp: i64, key: Option<Bytes>, value: Option<Bytes>) -> Self {
        Record {
            timestamp,
            key,
            value,
            headers: Vec::new(),
        }
    }

    /// A size estimate used to reserve buffer space.
    pub(crate) fn approx_len(&self) -> usize {
        24 + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|h| 10 + h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approx_len_covers_the_encoded_size() {
        let mut record = Record::new(
            i64::MIN,
            Some(Bytes::from(vec![1; 300])),
            Some(Bytes::from(vec![2; 70_000])),
        );
        record.headers.push(RecordHeader {
            key: Bytes::from(vec![3; 200]),
            value: Some(Bytes::from(vec![4; 200])),
        });
        let batch = crate::BatchBuilder::new()
            .build(std::slice::from_ref(&record))
            .unwrap();
        assert!(record.approx_len() >= batch.len() - crate::HEADER_LEN);
    }
}
