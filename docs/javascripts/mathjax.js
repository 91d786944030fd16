// MathJax 2.7 for the Markdown pages (pymdownx.arithmatex, generic mode). The notebook pages load the same
// MathJax themselves, so it is loaded here only where it is not there yet.
(function () {
  if (window.MathJax && window.MathJax.Hub) {
    return;
  }
  window.MathJax = {
    tex2jax: {
      inlineMath: [["\\(", "\\)"]],
      displayMath: [["\\[", "\\]"]],
      processEscapes: true,
      processClass: "arithmatex",
      ignoreClass: ".*",
    },
    messageStyle: "none",
  };
  var script = document.createElement("script");
  script.src = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS_CHTML-full,Safe";
  document.head.appendChild(script);
})();
