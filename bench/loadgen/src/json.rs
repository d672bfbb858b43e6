//! Just enough JSON output for one flat-ish result object.

pub struct Obj {
    parts: Vec<String>,
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Obj {
    pub fn new() -> Obj {
        Obj { parts: Vec::new() }
    }

    pub fn int(&mut self, k: &str, v: u64) -> &mut Obj {
        self.parts.push(format!("{}:{v}", escape(k)));
        self
    }

    /// Non-finite values become null rather than invalid JSON.
    pub fn num(&mut self, k: &str, v: f64) -> &mut Obj {
        let s = if v.is_finite() {
            format!("{:.3}", v)
        } else {
            "null".to_string()
        };
        self.parts.push(format!("{}:{s}", escape(k)));
        self
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Obj {
        self.parts.push(format!("{}:{}", escape(k), escape(v)));
        self
    }

    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Obj {
        match v {
            Some(s) => self.str(k, s),
            None => {
                self.parts.push(format!("{}:null", escape(k)));
                self
            }
        }
    }

    pub fn boolean(&mut self, k: &str, v: bool) -> &mut Obj {
        self.parts.push(format!("{}:{v}", escape(k)));
        self
    }

    pub fn obj(&mut self, k: &str, v: &Obj) -> &mut Obj {
        self.parts.push(format!("{}:{}", escape(k), v.finish()));
        self
    }

    pub fn finish(&self) -> String {
        format!("{{{}}}", self.parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let mut inner = Obj::new();
        inner.int("n", 3);
        let mut o = Obj::new();
        o.str("s", "a\"b\\c\n\u{1}")
            .num("x", 1.5)
            .num("nan", f64::NAN)
            .boolean("ok", true)
            .opt_str("e", None)
            .obj("in", &inner);
        assert_eq!(
            o.finish(),
            r#"{"s":"a\"b\\c\n\u0001","x":1.500,"nan":null,"ok":true,"e":null,"in":{"n":3}}"#
        );
    }
}
