console.log("vault");
